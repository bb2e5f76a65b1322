use reqwest::StatusCode;
use serde_json::json;

use crate::{service, spawn_app};

#[tokio::test]
async fn blueprint_lifecycle_create_get_list_replace_patch_delete() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;

    let got = app.get("/api/v1/blueprints/service").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["blueprint"]["title"], "Service");
    assert_eq!(got.body["blueprint"]["relations"]["system"]["target"], "system");
    assert!(got.body["blueprint"]["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let list = app.get("/api/v1/blueprints").await;
    let ids: Vec<&str> =
        list.body["blueprints"].as_array().expect("list").iter().filter_map(|b| b["identifier"].as_str()).collect();
    assert_eq!(ids, vec!["_team", "_user", "service", "system"]);

    let mut doc = got.body["blueprint"].clone();
    doc["title"] = json!("Microservice");
    let replaced = app.put("/api/v1/blueprints/service", doc).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["blueprint"]["title"], "Microservice");

    let patched = app
        .patch(
            "/api/v1/blueprints/service",
            json!({"description": "Deployable units", "schema": {"properties": {"tier": {"type": "string"}}}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["blueprint"]["description"], "Deployable units");
    assert_eq!(patched.body["blueprint"]["schema"]["properties"]["tier"]["type"], "string");
    assert_eq!(patched.body["blueprint"]["schema"]["properties"]["language"]["type"], "string", "merge keeps the rest");

    let created = app.post("/api/v1/blueprints/service/entities", service("cart")).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let refused = app.delete("/api/v1/blueprints/service").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.error_code(), "has_entities");
    let deleted = app.delete("/api/v1/blueprints/service?delete_entities=true").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(deleted.body["deleted_entities"], 1);
    assert_eq!(app.get("/api/v1/blueprints/service").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_blueprints_get_per_field_details() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/api/v1/blueprints",
            json!({
                "identifier": "thing",
                "schema": {"properties": {
                    "size": {"type": "number", "enum": ["big"]},
                    "owner": {"type": "string"}
                }},
                "relations": {
                    "owner": {"target": "nowhere", "many": true, "required": true}
                }
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.error_code(), "validation_failed");
    let paths = reply.detail_paths();
    for expected in ["/schema/properties/size/enum/0", "/relations/owner", "/relations/owner/target"] {
        assert!(paths.iter().any(|p| p == expected), "{expected} missing in {paths:?}");
    }

    let long = app.post("/api/v1/blueprints", json!({"identifier": "b".repeat(101)})).await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(long.detail_paths(), vec!["/identifier"]);

    let bad_chars = app.post("/api/v1/blueprints", json!({"identifier": "my service"})).await;
    assert_eq!(bad_chars.status, StatusCode::UNPROCESSABLE_ENTITY);

    let reserved = app.post("/api/v1/blueprints", json!({"identifier": "_secret"})).await;
    assert_eq!(reserved.status, StatusCode::UNPROCESSABLE_ENTITY);

    let wrong_type = app
        .post("/api/v1/blueprints", json!({"identifier": "x", "schema": {"properties": {"a": {"type": "float"}}}}))
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong_type.detail_paths(), vec!["/schema/properties/a/type"]);

    let duplicate = app.post("/api/v1/blueprints", json!({"identifier": "_team"})).await;
    assert_eq!(duplicate.status, StatusCode::UNPROCESSABLE_ENTITY, "reserved prefix wins: {}", duplicate.body);
    app.post("/api/v1/blueprints", json!({"identifier": "env"})).await;
    let again = app.post("/api/v1/blueprints", json!({"identifier": "env"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "already_exists");
}

#[tokio::test]
async fn schema_change_that_breaks_entities_is_refused_with_a_count_and_examples() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    for id in ["a", "b", "c"] {
        let mut doc = service(id);
        doc["properties"]["language"] = json!(if id == "c" { "Python" } else { "Go" });
        assert_eq!(app.post("/api/v1/blueprints/service/entities", doc).await.status, StatusCode::CREATED);
    }
    let refused = app
        .patch(
            "/api/v1/blueprints/service",
            json!({"schema": {"properties": {"language": {"type": "string", "enum": ["Rust", "Python"]}}}}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.error_code(), "schema_breaks_entities");
    assert!(refused.body["message"].as_str().is_some_and(|m| m.contains("2 existing entities")), "{}", refused.body);
    let examples: Vec<&str> =
        refused.body["details"].as_array().expect("details").iter().filter_map(|d| d["identifier"].as_str()).collect();
    assert_eq!(examples, vec!["a", "b"]);

    let added_required = app
        .patch(
            "/api/v1/blueprints/service",
            json!({"schema": {"properties": {"tier": {"type": "string"}}, "required": ["language", "tier"]}}),
        )
        .await;
    assert_eq!(added_required.error_code(), "schema_breaks_entities");

    let compatible = app
        .patch("/api/v1/blueprints/service", json!({"schema": {"properties": {"language": {"type": "string", "enum": ["Go", "Rust", "Python", "Java"]}}}}))
        .await;
    assert_eq!(compatible.status, StatusCode::OK, "{}", compatible.body);
}

#[tokio::test]
async fn system_blueprints_are_extensible_but_not_deletable() {
    let app = spawn_app().await;
    let refused = app.delete("/api/v1/blueprints/_team").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.error_code(), "in_use");

    let extended = app
        .patch("/api/v1/blueprints/_user", json!({"schema": {"properties": {"githubLogin": {"type": "string"}}}}))
        .await;
    assert_eq!(extended.status, StatusCode::OK, "{}", extended.body);
    assert_eq!(extended.body["blueprint"]["schema"]["properties"]["email"]["format"], "email");

    let removed = app.patch("/api/v1/blueprints/_user", json!({"schema": {"properties": {"email": null}}})).await;
    assert_eq!(removed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(removed.detail_paths(), vec!["/schema/properties/email"]);
}

#[tokio::test]
async fn a_blueprint_that_is_a_relation_target_cannot_be_deleted() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let refused = app.delete("/api/v1/blueprints/system?delete_entities=true").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.error_code(), "in_use");
    assert!(refused.body["message"].as_str().is_some_and(|m| m.contains("service.system")), "{}", refused.body);
}
