use portolan_server::ServerOptions;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{read, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversize_bodies_get_json_errors() {
    let app = spawn_app_with(ServerOptions { body_limit: 4096, ..ServerOptions::default() }).await;
    let url = format!("{}/api/v1/blueprints", app.base);

    let malformed = read(
        app.client
            .post(&url)
            .header("content-type", "application/json")
            .body("{\"identifier\": ")
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.error_code(), "malformed_json");

    let text =
        read(app.client.post(&url).header("content-type", "text/plain").body("{}").send().await.expect("sent")).await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(text.error_code(), "unsupported_media_type");

    let big = json!({"identifier": "big", "description": "x".repeat(5000)});
    let too_large = read(app.client.post(&url).json(&big).send().await.expect("sent")).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.error_code(), "payload_too_large");

    let not_object = app.post("/api/v1/blueprints", json!([1, 2])).await;
    assert_eq!(not_object.status, StatusCode::UNPROCESSABLE_ENTITY);

    let unknown_query = app.delete("/api/v1/blueprints/_team?force=yes").await;
    assert_eq!(unknown_query.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown_query.error_code(), "invalid_query");

    let nothing_stored = app.get("/api/v1/blueprints").await;
    assert_eq!(nothing_stored.body["blueprints"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn unknown_routes_methods_and_blueprints_answer_json() {
    let app = spawn_app().await;
    let route = app.get("/api/v1/nothing-here").await;
    assert_eq!(route.status, StatusCode::NOT_FOUND);
    assert_eq!(route.error_code(), "not_found");

    let method = app.call(reqwest::Method::DELETE, "/api/v1/blueprints", None).await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(method.error_code(), "method_not_allowed");

    let blueprint = app.post("/api/v1/blueprints/nope/entities", json!({"identifier": "a"})).await;
    assert_eq!(blueprint.status, StatusCode::NOT_FOUND);
    assert!(blueprint.body["message"].as_str().is_some_and(|m| m.contains("'nope'")));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    for path in ["/healthz", "/api/v1/blueprints", "/api/v1/blueprints/missing", "/no-such-route"] {
        let reply = app.get(path).await;
        let id = reply.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(id.len(), 36, "{path}: x-request-id {id:?}");
    }
    let given = read(
        app.client
            .get(format!("{}/healthz", app.base))
            .header("x-request-id", "trace-me-42")
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(given.headers["x-request-id"], "trace-me-42", "a caller's request id is kept");
}

#[tokio::test]
async fn a_path_segment_that_does_not_decode_gets_a_json_error() {
    let app = spawn_app().await;
    let reply = app.get("/api/v1/blueprints/%FF%FE/entities").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "invalid_query");
}

#[tokio::test]
async fn api_requests_are_rate_limited_per_credential_with_headers_that_say_where_one_stands() {
    let app = spawn_app_with(ServerOptions { rate_limit_per_minute: Some(3), ..ServerOptions::default() }).await;
    // Counted the same on Port's paths.
    for (path, remaining) in [("/api/v1/blueprints", "2"), ("/v1/blueprints", "1"), ("/api/v1/blueprints", "0")] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.headers["x-ratelimit-limit"], "3");
        assert_eq!(reply.headers["x-ratelimit-period"], "60");
        assert_eq!(reply.headers["x-ratelimit-remaining"], remaining);
        let reset: u64 = reply.headers["x-ratelimit-reset"].to_str().expect("ascii").parse().expect("seconds");
        assert!((1..=60).contains(&reset));
    }
    let over = app.get("/api/v1/blueprints").await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.error_code(), "too_many_requests");
    assert!(over.headers.contains_key("retry-after") && over.headers.contains_key("x-request-id"));
    assert_eq!(over.headers["x-ratelimit-remaining"], "0");
    let other = app.member("ana", &[]).await;
    assert_eq!(
        app.call_as(Method::GET, "/api/v1/blueprints", &other, None).await.status,
        StatusCode::OK,
        "per credential"
    );
    let health = app.client.get(format!("{}/healthz", app.base)).send().await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK, "operations endpoints are not limited");
}
