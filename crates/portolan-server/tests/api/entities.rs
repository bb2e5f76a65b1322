use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{read, service, spawn_app};

#[tokio::test]
async fn entity_lifecycle_with_versions_and_server_managed_fields() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;

    let created = app.post("/api/v1/blueprints/service/entities", service("cart")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let entity = &created.body["entity"];
    assert_eq!(entity["blueprint"], "service");
    assert_eq!(entity["version"], 1);
    assert_eq!(entity["createdBy"], "admin@test");
    assert_eq!(entity["properties"]["lifecycle"], "experimental", "default applied");
    assert_eq!(created.headers["etag"], "\"1\"");

    let got = app.get("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["entity"], created.body["entity"]);

    let patched = app.patch("/api/v1/blueprints/service/entities/cart", json!({"properties": {"replicas": 3}})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["entity"]["version"], 2);
    assert_eq!(patched.body["entity"]["properties"]["replicas"], 3);
    assert_eq!(patched.body["entity"]["properties"]["language"], "Rust", "patch keeps the rest");
    assert_eq!(patched.body["entity"]["createdAt"], entity["createdAt"]);

    // GET, edit, PUT back: the echoed server-managed fields are accepted.
    let mut document = patched.body["entity"].clone();
    document["title"] = json!("Cart");
    document["properties"] = json!({"language": "Go"});
    let replaced = app.put("/api/v1/blueprints/service/entities/cart", document).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["entity"]["title"], "Cart");
    assert_eq!(replaced.body["entity"]["properties"], json!({"language": "Go", "lifecycle": "experimental"}));
    assert_eq!(replaced.body["entity"]["version"], 3);

    let deleted = app.delete("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["deleted"], json!([{"blueprint": "service", "identifier": "cart"}]));
    let gone = app.get("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error_code(), "not_found");
}

#[tokio::test]
async fn upsert_and_merge_on_create() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.post("/api/v1/blueprints/service/entities", json!({"identifier": "cart", "title": "Cart", "properties": {"language": "Go", "replicas": 2}, "relations": {"system": "shop"}})).await;

    let duplicate = app.post("/api/v1/blueprints/service/entities", service("cart")).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(duplicate.error_code(), "already_exists");

    let merged = app
        .post(
            "/api/v1/blueprints/service/entities?upsert=true&merge=true",
            json!({"identifier": "cart", "properties": {"replicas": 4}}),
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    assert_eq!(merged.body["entity"]["properties"]["language"], "Go");
    assert_eq!(merged.body["entity"]["properties"]["replicas"], 4);
    assert_eq!(merged.body["entity"]["title"], "Cart");

    let replaced = app.post("/api/v1/blueprints/service/entities?upsert=true", service("cart")).await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_eq!(replaced.body["entity"]["properties"].get("replicas"), None);
    assert_eq!(replaced.body["entity"]["title"], Value::Null);
    assert_eq!(replaced.body["entity"]["version"], 3);

    let generated = app.post("/api/v1/blueprints/system/entities", json!({"title": "No identifier"})).await;
    assert_eq!(generated.status, StatusCode::CREATED);
    assert!(generated.body["entity"]["identifier"].as_str().is_some_and(|id| id.starts_with("e_")));
}

#[tokio::test]
async fn stale_if_match_is_refused_with_412_and_current_version_passes() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.post("/api/v1/blueprints/service/entities", service("cart")).await;
    app.patch("/api/v1/blueprints/service/entities/cart", json!({"properties": {"replicas": 1}})).await;

    let url = format!("{}/api/v1/blueprints/service/entities/cart", app.base);
    let stale = read(
        app.client
            .patch(&url)
            .header("if-match", "\"1\"")
            .json(&json!({"properties": {"replicas": 2}}))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.error_code(), "precondition_failed");
    let unchanged = app.get("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(unchanged.body["entity"]["properties"]["replicas"], 1, "a refused write changes nothing");

    let fresh = read(
        app.client
            .patch(&url)
            .header("if-match", "\"2\"")
            .json(&json!({"properties": {"replicas": 2}}))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(fresh.headers["etag"], "\"3\"");

    let stale_delete = read(app.client.delete(&url).header("if-match", "2").send().await.expect("sent")).await;
    assert_eq!(stale_delete.status, StatusCode::PRECONDITION_FAILED);
    let garbage = read(app.client.delete(&url).header("if-match", "yesterday").send().await.expect("sent")).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    let any = read(app.client.delete(&url).header("if-match", "*").send().await.expect("sent")).await;
    assert_eq!(any.status, StatusCode::OK);
}

#[tokio::test]
async fn validation_errors_point_at_each_field() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let cases = [
        (
            json!({"identifier": "a", "properties": {"language": 7}, "relations": {"system": "shop"}}),
            "/properties/language",
            "expected a string",
        ),
        (
            json!({"identifier": "a", "properties": {"language": "COBOL"}, "relations": {"system": "shop"}}),
            "/properties/language",
            "is not one of",
        ),
        (
            json!({"identifier": "a", "properties": {}, "relations": {"system": "shop"}}),
            "/properties/language",
            "is required",
        ),
        (
            json!({"identifier": "a", "properties": {"language": "Go", "replicas": 99}, "relations": {"system": "shop"}}),
            "/properties/replicas",
            "maximum",
        ),
        (
            json!({"identifier": "a", "properties": {"language": "Go", "repository": "not a url"}, "relations": {"system": "shop"}}),
            "/properties/repository",
            "valid url",
        ),
        (
            json!({"identifier": "a", "properties": {"language": "Go", "colour": "red"}, "relations": {"system": "shop"}}),
            "/properties/colour",
            "not a property",
        ),
        (json!({"identifier": "a", "properties": {"language": "Go"}}), "/relations/system", "required"),
        (
            json!({"identifier": "a", "properties": {"language": "Go"}, "relations": {"system": "nowhere"}}),
            "/relations/system",
            "no entity 'nowhere'",
        ),
        (
            json!({"identifier": "a", "properties": {"language": "Go"}, "relations": {"system": "shop", "dependsOn": "b"}}),
            "/relations/dependsOn",
            "array",
        ),
        (
            json!({"identifier": "a", "properties": {"language": "Go"}, "relations": {"system": "shop"}, "team": "ghosts"}),
            "/team/0",
            "no entity 'ghosts'",
        ),
        (
            json!({"identifier": "x".repeat(101), "properties": {"language": "Go"}, "relations": {"system": "shop"}}),
            "/identifier",
            "limit is 100",
        ),
        (
            json!({"identifier": "a b", "properties": {"language": "Go"}, "relations": {"system": "shop"}}),
            "/identifier",
            "not allowed",
        ),
        (
            json!({"identifier": "a", "properties": {"language": "Go"}, "relations": {"system": "shop"}, "colour": 1}),
            "/colour",
            "unknown field",
        ),
    ];
    for (document, path, message) in cases {
        let reply = app.post("/api/v1/blueprints/service/entities", document.clone()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{document} → {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed");
        let detail = reply.body["details"].as_array().and_then(|d| d.iter().find(|d| d["path"] == path)).cloned();
        let detail = detail.unwrap_or_else(|| panic!("no detail at {path:?} for {document}: {}", reply.body));
        assert!(detail["message"].as_str().is_some_and(|m| m.contains(message)), "{detail} should mention {message:?}");
    }
    let listed = app.get("/api/v1/blueprints/service/entities").await;
    assert_eq!(listed.body["entities"], json!([]), "nothing invalid was stored");
}

#[tokio::test]
async fn unicode_identifiers_round_trip_through_urls() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    for id in ["café-ßervice", "订单服务", "alice@example.com"] {
        let created = app.post("/api/v1/blueprints/service/entities", service(id)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{id}: {}", created.body);
        let path = format!("/api/v1/blueprints/service/entities/{}", urlencode(id));
        let got = app.get(&path).await;
        assert_eq!(got.status, StatusCode::OK, "{id}");
        assert_eq!(got.body["entity"]["identifier"], id);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.@".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn deleting_a_referenced_entity_is_refused_unless_dependents_go_too() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.post("/api/v1/blueprints/service/entities", service("db")).await;
    let mut api = service("api");
    api["relations"]["dependsOn"] = json!(["db"]);
    app.post("/api/v1/blueprints/service/entities", api).await;
    let mut web = service("web");
    web["relations"]["dependsOn"] = json!(["api"]);
    app.post("/api/v1/blueprints/service/entities", web).await;

    let refused = app.delete("/api/v1/blueprints/service/entities/db").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.error_code(), "has_dependents");
    assert_eq!(refused.body["details"], json!([{"blueprint": "service", "identifier": "api", "via": "dependsOn"}]));

    let shop = app.delete("/api/v1/blueprints/system/entities/shop").await;
    assert_eq!(shop.status, StatusCode::CONFLICT, "three services point at the system");
    assert_eq!(shop.body["details"].as_array().map(Vec::len), Some(3));

    let cascade = app.delete("/api/v1/blueprints/service/entities/db?delete_dependents=true").await;
    assert_eq!(cascade.status, StatusCode::OK, "{}", cascade.body);
    let deleted: Vec<&str> =
        cascade.body["deleted"].as_array().expect("list").iter().filter_map(|d| d["identifier"].as_str()).collect();
    assert_eq!(deleted, vec!["api", "db", "web"]);
    assert_eq!(app.get("/api/v1/blueprints/service/entities/web").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn teams_and_users_are_entities_and_team_must_exist() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let team = app.post("/api/v1/blueprints/_team/entities", json!({"identifier": "team-cart", "title": "Cart"})).await;
    assert_eq!(team.status, StatusCode::CREATED, "{}", team.body);
    let user = app
        .post(
            "/api/v1/blueprints/_user/entities",
            json!({"identifier": "ann@example.com", "team": ["team-cart"], "properties": {"email": "ann@example.com"}}),
        )
        .await;
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.body);
    assert_eq!(user.body["entity"]["properties"]["status"], "active");

    let mut owned = service("cart");
    owned["team"] = json!("team-cart");
    let created = app.post("/api/v1/blueprints/service/entities", owned).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["entity"]["team"], json!(["team-cart"]));

    let bad_email = app
        .post("/api/v1/blueprints/_user/entities", json!({"identifier": "x", "properties": {"email": "nope"}}))
        .await;
    assert_eq!(bad_email.status, StatusCode::UNPROCESSABLE_ENTITY);
    let team_in_use = app.delete("/api/v1/blueprints/_team/entities/team-cart").await;
    assert_eq!(team_in_use.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn bulk_gives_one_result_per_item_and_one_bad_item_does_not_sink_the_rest() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.post("/api/v1/blueprints/service/entities", service("existing")).await;
    let mut needs_later = service("front");
    needs_later["relations"]["dependsOn"] = json!(["back"]);
    let mut needs_broken = service("edge");
    needs_broken["relations"]["dependsOn"] = json!(["broken"]);
    let broken = json!({"identifier": "broken", "properties": {"language": "COBOL"}, "relations": {"system": "shop"}});
    let request = json!({"entities": [
        needs_later, service("back"), broken, needs_broken, service("existing"), service("back"), "not an object"
    ]});
    let reply = app.post("/api/v1/blueprints/service/entities/bulk", request).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS, "{}", reply.body);
    assert_eq!(reply.body["ok"], false);
    let results: Vec<(&str, &str)> = reply.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["result"].as_str().unwrap_or(""), r["error"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        results,
        vec![
            ("created", ""),
            ("created", ""),
            ("error", "validation_failed"),
            ("error", "validation_failed"),
            ("error", "already_exists"),
            ("error", "conflict"),
            ("error", "validation_failed"),
        ]
    );
    assert_eq!(reply.body["results"][3]["details"][0]["path"], "/relations/dependsOn/0");
    assert_eq!(app.get("/api/v1/blueprints/service/entities/front").await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/blueprints/service/entities/edge").await.status, StatusCode::NOT_FOUND);

    let mut renamed = service("existing");
    renamed["title"] = json!("Existing service");
    let upsert = app
        .post(
            "/api/v1/blueprints/service/entities/bulk?upsert=true",
            json!({"entities": [renamed.clone(), service("new")]}),
        )
        .await;
    assert_eq!(upsert.status, StatusCode::OK);
    assert_eq!(upsert.body["results"][0]["result"], "updated");
    assert_eq!(upsert.body["results"][1]["result"], "created");
    let again = app.post("/api/v1/blueprints/service/entities/bulk?upsert=true", json!({"entities": [renamed]})).await;
    assert_eq!(again.body["results"][0]["result"], "unchanged", "the same again writes nothing: {}", again.body);

    let too_many: Vec<Value> = (0..1001).map(|i| service(&format!("s{i}"))).collect();
    let refused = app.post("/api/v1/blueprints/service/entities/bulk", json!({"entities": too_many})).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn list_pages_with_a_cursor_through_every_entity_once() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let entities: Vec<Value> = (0..25).map(|i| service(&format!("svc-{i:02}"))).collect();
    let bulk = app.post("/api/v1/blueprints/service/entities/bulk", json!({"entities": entities})).await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);

    let mut seen = Vec::new();
    let mut path = "/api/v1/blueprints/service/entities?limit=10".to_string();
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(
            page.body["entities"]
                .as_array()
                .expect("page")
                .iter()
                .filter_map(|e| e["identifier"].as_str().map(str::to_string)),
        );
        match page.body["next"].as_str() {
            Some(next) => path = format!("/api/v1/blueprints/service/entities?limit=10&cursor={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("svc-{i:02}")).collect();
    assert_eq!(seen, expected);

    let bad_limit = app.get("/api/v1/blueprints/service/entities?limit=0").await;
    assert_eq!(bad_limit.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_limit.detail_paths(), vec!["/limit"]);
    let bad_cursor = app.get("/api/v1/blueprints/service/entities?cursor=%%%").await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);
    let unknown = app.call(Method::GET, "/api/v1/blueprints/nope/entities", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
