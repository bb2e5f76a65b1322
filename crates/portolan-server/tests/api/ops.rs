use reqwest::StatusCode;

use crate::spawn_app;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["database"], "sqlite");

    app.get("/api/v1/blueprints").await;
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.expect("sent");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("portolan_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/v1/blueprints\""), "{text}");
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let app = spawn_app().await;
    let doc = app.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc.body["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/blueprints",
        "/api/v1/blueprints/{blueprint}",
        "/api/v1/blueprints/{blueprint}/entities",
        "/api/v1/blueprints/{blueprint}/entities/bulk",
        "/api/v1/blueprints/{blueprint}/entities/{entity}",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert!(paths["/api/v1/blueprints/{blueprint}/entities/{entity}"]["patch"].is_object());
    assert!(doc.body["components"]["schemas"]["Blueprint"].is_object());
}

#[tokio::test]
async fn demo_catalog_loads_idempotently_with_the_brief_s_entities() {
    let app = spawn_app().await;
    let first = portolan_server::demo::load(&app.state).await.expect("demo loads");
    assert_eq!(first.blueprints_created, 10, "the brief's six, environments, deployments, incidents and locks");
    assert!(first.history_created > 100, "90 days of deployments and incidents: {}", first.history_created);
    assert_eq!(
        first.entities_created, 33,
        "3 teams, 4 users, the brief's 10 catalog entities and 16 the gallery's runs act on"
    );
    assert_eq!(first.actions_written, 44, "the gallery: 40 templates, with their automations and the unlock");
    assert_eq!(first.dashboards_created, 1, "the platform overview");
    let second = portolan_server::demo::load(&app.state).await.expect("demo loads again");
    assert_eq!(second, portolan_server::demo::DemoSummary::default(), "nothing is added twice");

    let cart = app.get("/api/v1/blueprints/service/entities/cart-service").await;
    assert_eq!(cart.status, StatusCode::OK);
    assert_eq!(cart.body["entity"]["title"], "Cart Service");
    assert_eq!(cart.body["entity"]["relations"]["system"], "cart-system");
    let system = app.get("/api/v1/blueprints/system/entities/cart-system").await;
    assert_eq!(system.body["entity"]["relations"]["domain"], "order-domain");
    for (blueprint, id) in [
        ("domain", "order-domain"),
        ("system", "products-system"),
        ("resource", "cart-resource"),
        ("api", "cart-api"),
        ("library", "core-kafka-library"),
        ("library", "core-payment-library"),
        ("service", "products-service"),
    ] {
        assert_eq!(
            app.get(&format!("/api/v1/blueprints/{blueprint}/entities/{id}")).await.status,
            StatusCode::OK,
            "{id}"
        );
    }
}

/// Reads a server-sent-events stream until `needle` appears; fails after 2 s.
pub async fn read_stream_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("no {needle:?} in the stream ({other:?}); got {seen}"),
        }
    }
    seen
}

#[tokio::test]
async fn live_events_stream_changes_as_they_commit() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let mut all = app.client.get(format!("{}/api/v1/events", app.base)).send().await.expect("stream");
    assert_eq!(all.headers()["content-type"], "text/event-stream");
    let mut services =
        app.client.get(format!("{}/api/v1/events?blueprint=service", app.base)).send().await.expect("stream");

    app.post("/api/v1/blueprints/system/entities", serde_json::json!({"identifier": "shop-2"})).await;
    app.post("/api/v1/blueprints/service/entities", crate::service("live")).await;
    app.delete("/api/v1/blueprints/service/entities/live").await;

    let seen = read_stream_until(&mut all, "entity.deleted").await;
    assert!(seen.contains("event: entity.created\ndata: {\"kind\":\"entity.created\",\"blueprint\":\"system\",\"identifier\":\"shop-2\",\"version\":1}"), "{seen}");
    let seen = read_stream_until(&mut services, "entity.deleted").await;
    assert!(seen.contains("\"identifier\":\"live\""), "{seen}");
    assert!(!seen.contains("shop-2"), "filtered to the service blueprint: {seen}");
}
