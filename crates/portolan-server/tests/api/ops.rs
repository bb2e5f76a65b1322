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
    let first = portolan_server::demo::load(&app.state.catalog).await.expect("demo loads");
    assert_eq!(first.blueprints_created, 6);
    assert_eq!(first.entities_created, 17, "3 teams, 4 users and the brief's 10 catalog entities");
    let second = portolan_server::demo::load(&app.state.catalog).await.expect("demo loads again");
    assert_eq!(second, portolan_server::demo::DemoSummary::default());

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
