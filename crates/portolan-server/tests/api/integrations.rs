//! Integrations: the mapping language, tried on sample payloads through `test-mapping`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::spawn_app;

/// GitHub's `repository` webhook payload, cut to the fields the mapping reads (names and shapes
/// as GitHub documents them).
fn repositories_payload() -> Value {
    json!({
        "action": "created",
        "repositories": [
            {"id": 1296269, "name": "cart", "full_name": "acme/cart", "html_url": "https://github.com/acme/cart",
             "language": "Rust", "topics": ["shop"], "archived": false},
            {"id": 1296270, "name": "pay", "full_name": "acme/pay", "html_url": "https://github.com/acme/pay",
             "language": "COBOL", "topics": ["shop"], "archived": false},
            {"id": 1296271, "name": "old", "full_name": "acme/old", "html_url": "https://github.com/acme/old",
             "language": "Go", "topics": [], "archived": true},
            {"id": 1296272, "name": "bad", "full_name": "acme/bad", "html_url": "https://github.com/acme/bad",
             "language": "Go", "topics": "not a list", "archived": false}
        ],
        "sender": {"login": "octocat"}
    })
}

fn mapping() -> Value {
    json!({"resources": [{
        "kind": "repository",
        "selector": {"query": ".item.archived | not"},
        "port": {"itemsToParse": ".repositories", "entity": {"mappings": {
            "identifier": ".item.name",
            "title": ".item.full_name",
            "blueprint": "\"service\"",
            "properties": {"language": ".item.language", "repository": ".item.html_url"},
            "relations": {"system": ".item.topics[0]"}
        }}}
    }]})
}

#[tokio::test]
async fn test_mapping_shows_each_item_with_its_problems_and_writes_nothing() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let reply = app
        .post("/api/v1/integrations/test-mapping", json!({"mapping": mapping(), "payload": repositories_payload()}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let items = reply.body["items"].as_array().expect("items");
    assert_eq!(
        items.iter().map(|i| i["item"].as_u64().unwrap_or(99)).collect::<Vec<_>>(),
        [0, 1, 3],
        "archived is left out"
    );

    assert_eq!(
        items[0]["entity"],
        json!({"identifier": "cart", "title": "acme/cart", "blueprint": "service",
               "properties": {"language": "Rust", "repository": "https://github.com/acme/cart"},
               "relations": {"system": "shop"}})
    );
    assert_eq!(items[0]["problems"], json!([]));
    assert_eq!(items[0]["kind"], "repository");
    assert_eq!(items[1]["problems"][0]["path"], "/resources/0/port/entity/mappings/properties/language");
    assert!(items[1]["problems"][0]["message"].as_str().unwrap_or_default().contains("COBOL"), "{}", items[1]);
    assert_eq!(items[2]["entity"], Value::Null, "the item whose jq failed has no entity");
    assert_eq!(items[2]["problems"][0]["path"], "/resources/0/port/entity/mappings/relations/system");
    assert!(
        app.get("/api/v1/blueprints/service/entities/cart").await.status == StatusCode::NOT_FOUND,
        "nothing is written"
    );

    // A member who moderates no blueprint sees that the entities could not be theirs to write.
    let member = app.member("mia", &[]).await;
    let theirs = app
        .call_as(
            reqwest::Method::POST,
            "/api/v1/integrations/test-mapping",
            &member,
            Some(json!({"mapping": mapping(), "payload": repositories_payload()})),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
    assert_eq!(theirs.body["items"][0]["problems"][0]["path"], "/resources/0/port/entity/mappings/blueprint");

    let unknown = app
        .post(
            "/api/v1/integrations/test-mapping",
            json!({"mapping": {"resources": [{"kind": "x", "port": {"entity": {"mappings": {
                "identifier": ".id", "blueprint": "\"nope\""}}}}]}, "payload": {"id": "a"}}),
        )
        .await;
    assert_eq!(unknown.body["items"][0]["problems"][0]["message"], "blueprint 'nope' does not exist");
}

#[tokio::test]
async fn a_mapping_that_does_not_compile_is_refused_by_pointer() {
    let app = spawn_app().await;
    let bad = json!({"resources": [{"kind": "repository", "selector": {"query": ".x =="},
        "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"service\""}}}}]});
    let reply = app.post("/api/v1/integrations/test-mapping", json!({"mapping": bad, "payload": {}})).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
    assert_eq!(reply.detail_paths(), ["/mapping/resources/0/selector/query"]);
    let wrong_type =
        app.post("/api/v1/integrations/test-mapping", json!({"mapping": {"resources": 3}, "payload": {}})).await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", wrong_type.body);
    assert_eq!(wrong_type.detail_paths(), ["/mapping/resources"]);
}
