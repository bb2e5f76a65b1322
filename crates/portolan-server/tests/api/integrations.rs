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

const GITHUB_SECRET: &str = "It's a Secret to Everybody";

fn github_signature(body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).expect("key");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A webhook integration for GitHub: pushes upsert the repository's service, a deleted repository
/// deletes it; deliveries are signed and identified as GitHub does.
fn github_webhook() -> Value {
    json!({
        "identifier": "github",
        "title": "GitHub webhooks",
        "type": "webhook",
        "security": {"secret": "github-hook", "requestIdentifierPath": ".headers.\"x-github-delivery\""},
        "mapping": {"resources": [
            {"kind": "push", "selector": {"query": ".headers.\"x-github-event\" == \"push\""},
             "port": {"entity": {"mappings": {
                "identifier": ".body.repository.name", "blueprint": "\"service\"",
                "title": ".body.repository.full_name",
                "properties": {"language": ".body.repository.language", "repository": ".body.repository.html_url"},
                "relations": {"system": "\"shop\""}}}}},
            {"kind": "repository", "operation": "delete",
             "selector": {"query": ".headers.\"x-github-event\" == \"repository\" and .body.action == \"deleted\""},
             "port": {"entity": {"mappings": {"identifier": ".body.repository.name", "blueprint": "\"service\""}}}}
        ]}
    })
}

/// A push event as GitHub sends it (the fields the mapping reads, in GitHub's shapes).
fn push(repository: &str, language: &str) -> Value {
    json!({
        "ref": "refs/heads/main", "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "0000000000000000000000000000000000000001",
        "repository": {"id": 1296269, "name": repository, "full_name": format!("acme/{repository}"),
            "html_url": format!("https://github.com/acme/{repository}"), "language": language, "private": false},
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "sender": {"login": "octocat", "id": 1}
    })
}

async fn deliver(url: &str, event: &str, delivery: &str, body: &Value) -> (StatusCode, Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", github_signature(&bytes))
        .body(bytes)
        .send()
        .await
        .expect("delivered");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_signed_webhook_becomes_entities_once_and_every_event_keeps_its_outcome() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    assert!(
        app.post("/api/v1/secrets", json!({"name": "github-hook", "value": GITHUB_SECRET})).await.status.is_success()
    );
    let created = app.post("/api/v1/integrations", github_webhook()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let url = created.body["integration"]["ingestUrl"].as_str().expect("an ingest URL, shown once").to_string();
    assert!(url.starts_with(&format!("{}/integrations/webhooks/", app.base)), "{url}");
    let shown = app.get("/api/v1/integrations/github").await;
    assert_eq!(shown.body["integration"]["ingestUrl"], Value::Null, "the URL is not shown again");

    let (status, accepted) = deliver(&url, "push", "d-1", &push("cart", "Rust")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    app.drain_jobs().await;
    let cart = app.get("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.body);
    assert_eq!(cart.body["entity"]["title"], "acme/cart");
    assert_eq!(cart.body["entity"]["properties"]["language"], "Rust");
    assert_eq!(cart.body["entity"]["updatedBy"], "integration:github");

    // GitHub redelivers: the same delivery id is acknowledged and not processed again.
    let (status, replay) = deliver(&url, "push", "d-1", &push("cart", "Go")).await;
    assert_eq!((status, &replay["duplicate"]), (StatusCode::OK, &json!(true)), "{replay}");
    app.drain_jobs().await;
    let cart = app.get("/api/v1/blueprints/service/entities/cart").await;
    assert_eq!(cart.body["entity"]["properties"]["language"], "Rust", "the replay changed nothing");

    // A mapped entity its blueprint refuses fails in the event log, with the entity's pointer.
    let (status, _) = deliver(&url, "push", "d-2", &push("ledger", "COBOL")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // An event no resource selects is kept as ignored.
    let (status, _) = deliver(&url, "star", "d-3", &json!({"action": "created"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) =
        deliver(&url, "repository", "d-4", &json!({"action": "deleted", "repository": {"name": "cart"}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.drain_jobs().await;
    assert_eq!(app.get("/api/v1/blueprints/service/entities/cart").await.status, StatusCode::NOT_FOUND);

    let log = app.get("/api/v1/integrations/github/events?limit=3").await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let events = log.body["events"].as_array().expect("events");
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["requestId"].as_str().unwrap_or_default().into(), e["state"].as_str().unwrap_or_default().into()))
        .collect();
    assert_eq!(
        summary,
        [("d-4".into(), "done".into()), ("d-3".into(), "ignored".into()), ("d-2".into(), "failed".into())],
        "newest first"
    );
    assert_eq!(events[0]["items"][0]["result"], "deleted");
    let failed = &events[2]["items"][0];
    assert_eq!((&failed["blueprint"], &failed["identifier"]), (&json!("service"), &json!("ledger")));
    assert!(failed["error"].as_str().unwrap_or_default().contains("/properties/language"), "{failed}");
    assert_eq!(events[0]["request"]["headers"]["x-hub-signature-256"], Value::Null, "credentials are not kept");
    let older = app
        .get(&format!("/api/v1/integrations/github/events?before={}", log.body["next"].as_str().unwrap_or("?")))
        .await;
    assert_eq!(older.body["events"][0]["requestId"], "d-1");
    assert_eq!(older.body["events"][0]["items"][0]["result"], "created");
}

#[tokio::test]
async fn bad_requests_to_an_ingest_url_are_refused_and_nothing_is_kept() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.post("/api/v1/secrets", json!({"name": "github-hook", "value": GITHUB_SECRET})).await;
    let created = app.post("/api/v1/integrations", github_webhook()).await;
    let url = created.body["integration"]["ingestUrl"].as_str().expect("url").to_string();
    let client = reqwest::Client::new();

    let body = serde_json::to_vec(&push("cart", "Rust")).expect("json");
    let forged = client
        .post(&url)
        .header("x-github-event", "push")
        .header("x-hub-signature-256", github_signature(b"another body"))
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let error: Value = forged.json().await.expect("json");
    assert!(error["message"].as_str().unwrap_or_default().contains("does not match"), "{error}");
    let unsigned = client.post(&url).body(body.clone()).send().await.expect("sent");
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let not_json =
        client.post(&url).header("x-hub-signature-256", github_signature(b"{oops")).body("{oops").send().await;
    assert_eq!(not_json.expect("sent").status(), StatusCode::BAD_REQUEST);
    let unknown = client.post(format!("{}/integrations/webhooks/not-a-key", app.base)).body("{}").send().await;
    assert_eq!(unknown.expect("sent").status(), StatusCode::NOT_FOUND);
    let log = app.get("/api/v1/integrations/github/events").await;
    assert_eq!(log.body["events"], json!([]), "nothing refused was kept");

    // A rotated key: the old URL stops at once, the new one works.
    let rotated = app.post("/api/v1/integrations/github/rotate-key", json!({})).await;
    let new_url = rotated.body["integration"]["ingestUrl"].as_str().expect("new url").to_string();
    let (status, _) = deliver(&url, "push", "d-9", &push("cart", "Rust")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = deliver(&new_url, "push", "d-9", &push("cart", "Rust")).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Configuration problems are named by pointer.
    let mut bad = github_webhook();
    bad["identifier"] = json!("other");
    bad["security"] = json!({"secret": "missing", "requestIdentifierPath": "headers.id"});
    let refused = app.post("/api/v1/integrations", bad).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.detail_paths(), ["/security/requestIdentifierPath"]);
    let taken = app.post("/api/v1/integrations", github_webhook()).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    let in_use = app.delete("/api/v1/secrets/github-hook").await;
    assert_eq!(in_use.error_code(), "in_use", "{}", in_use.body);
    assert!(in_use.body["message"].as_str().unwrap_or_default().contains("integration 'github'"), "{}", in_use.body);
}

#[tokio::test]
async fn integrations_are_managed_by_admins_and_the_moderators_of_their_blueprints() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let moderators = json!({"moderators": {"teams": ["team-platform"]}});
    assert!(app.put("/api/v1/blueprints/service/permissions", moderators).await.status.is_success());
    let mo = app.member("mo", &["team-platform"]).await;
    let mia = app.member("mia", &[]).await;
    let mut hook = github_webhook();
    hook["security"] = Value::Null;

    let refused = app.call_as(reqwest::Method::POST, "/api/v1/integrations", &mia, Some(hook.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let made = app.call_as(reqwest::Method::POST, "/api/v1/integrations", &mo, Some(hook.clone())).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let theirs = app.call_as(reqwest::Method::GET, "/api/v1/integrations/github/events", &mo, None).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
    let hidden = app.call_as(reqwest::Method::GET, "/api/v1/integrations/github/events", &mia, None).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);
    let listed = app.call_as(reqwest::Method::GET, "/api/v1/integrations", &mia, None).await;
    assert_eq!(listed.body["integrations"], json!([]));

    // A blueprint chosen by jq could be any blueprint: only an admin may.
    hook["identifier"] = json!("dynamic");
    hook["mapping"]["resources"][0]["port"]["entity"]["mappings"]["blueprint"] = json!(".body.blueprint");
    let dynamic = app.call_as(reqwest::Method::POST, "/api/v1/integrations", &mo, Some(hook.clone())).await;
    assert_eq!(dynamic.status, StatusCode::FORBIDDEN, "{}", dynamic.body);
    assert_eq!(app.post("/api/v1/integrations", hook).await.status, StatusCode::CREATED);
}

/// A local REST source: repositories two to a page with a `Link` header, as GitHub pages them,
/// behind a bearer token; it can be told to fail or to rate-limit once.
#[derive(Clone, Default)]
struct Source {
    items: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    answer: std::sync::Arc<std::sync::Mutex<Option<StatusCode>>>,
    rate_limit_once: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How many conditional requests it answered `304 Not Modified`.
    not_modified: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Source {
    async fn start(&self) -> String {
        use axum::extract::{Query, State};
        use axum::http::HeaderMap;
        use axum::response::IntoResponse;
        async fn page(
            State(source): State<Source>,
            Query(query): Query<std::collections::HashMap<String, String>>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer source-token") {
                return (StatusCode::UNAUTHORIZED, "token").into_response();
            }
            if source.rate_limit_once.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response();
            }
            if let Some(status) = *source.answer.lock().expect("lock") {
                return (status, "broken").into_response();
            }
            let number: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let items = source.items.lock().expect("lock").clone();
            let chunk: Vec<Value> = items.iter().skip((number - 1) * 2).take(2).cloned().collect();
            let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let body = json!({"total": items.len(), "repositories": chunk});
            let etag = {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                body.to_string().hash(&mut hasher);
                format!("\"{:x}\"", hasher.finish())
            };
            if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                source.not_modified.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
            }
            let mut response = axum::Json(body).into_response();
            response.headers_mut().insert("etag", etag.parse().expect("header"));
            if number * 2 < items.len() {
                let link = format!("<http://{host}/repos?page={}>; rel=\"next\"", number + 1);
                response.headers_mut().insert("link", link.parse().expect("header"));
            }
            response
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let router = axum::Router::new().route("/repos", axum::routing::get(page)).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}/repos")
    }

    fn set(&self, items: &[(&str, &str)]) {
        *self.items.lock().expect("lock") =
            items.iter().map(|(name, language)| json!({"name": name, "language": language})).collect();
    }
}

#[tokio::test]
async fn a_rest_integration_pulls_every_page_and_follows_what_leaves_the_source() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.post("/api/v1/secrets", json!({"name": "source-token", "value": "source-token"})).await;
    let source = Source::default();
    source.set(&[("cart", "Rust"), ("pay", "Go"), ("ledger", "Python")]);
    let url = source.start().await;
    let integration = json!({
        "identifier": "repos", "type": "rest", "intervalSeconds": 3600,
        "source": {"url": url, "authSecret": "source-token", "itemsPath": ".repositories", "pagination": {"type": "link"}},
        "mapping": {"resources": [{"kind": "repository", "port": {"entity": {"mappings": {
            "identifier": ".name", "blueprint": "\"service\"", "title": ".name",
            "properties": {"language": ".language"}, "relations": {"system": "\"shop\""}}}}}]}
    });
    let created = app.post("/api/v1/integrations", integration).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let counts = |reply: &crate::Reply| {
        let s = &reply.body["status"];
        (
            s["state"].as_str().unwrap_or_default().to_string(),
            s["created"].clone(),
            s["updated"].clone(),
            s["deleted"].clone(),
        )
    };
    // A new integration is due at once: the sweeper pulls it (a manual sync would race it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let first = loop {
        let shown = app.get("/api/v1/integrations/repos").await;
        if shown.body["integration"]["status"]["state"] == "ok" {
            break crate::Reply { body: shown.body["integration"].clone(), ..shown };
        }
        assert!(std::time::Instant::now() < deadline, "no first pull: {}", shown.body);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(counts(&first), ("ok".into(), json!(3), json!(0), json!(0)), "{}", first.body);
    assert_eq!(first.body["status"]["fetched"], 3, "both pages were read");
    let ledger = app.get("/api/v1/blueprints/service/entities/ledger").await;
    assert_eq!(ledger.body["entity"]["properties"]["language"], "Python", "{}", ledger.body);

    // An unchanged source is asked whether its pages changed (their ETags), and nothing is read
    // or written; a changed one updates and deletes.
    let again = app.post("/api/v1/integrations/repos/sync", json!({})).await;
    assert_eq!(counts(&again), ("ok".into(), json!(0), json!(0), json!(0)), "{}", again.body);
    assert_eq!(again.body["status"]["unchanged"], 3);
    assert_eq!(source.not_modified.load(std::sync::atomic::Ordering::SeqCst), 2, "both pages answered 304");
    source.set(&[("cart", "Go"), ("pay", "Go")]);
    let changed = app.post("/api/v1/integrations/repos/sync", json!({})).await;
    assert_eq!(counts(&changed), ("ok".into(), json!(0), json!(1), json!(1)), "{}", changed.body);
    assert_eq!(app.get("/api/v1/blueprints/service/entities/ledger").await.status, StatusCode::NOT_FOUND);

    // A source that fails changes nothing; a rate limit is waited out.
    *source.answer.lock().expect("lock") = Some(StatusCode::INTERNAL_SERVER_ERROR);
    let failed = app.post("/api/v1/integrations/repos/sync", json!({})).await;
    assert_eq!(failed.body["status"]["state"], "failed", "{}", failed.body);
    assert!(failed.body["status"]["error"].as_str().unwrap_or_default().contains("500"), "{}", failed.body);
    assert_eq!(app.get("/api/v1/blueprints/service/entities/pay").await.status, StatusCode::OK);
    *source.answer.lock().expect("lock") = None;
    source.rate_limit_once.store(true, std::sync::atomic::Ordering::SeqCst);
    let waited = app.post("/api/v1/integrations/repos/sync", json!({})).await;
    assert_eq!(waited.body["status"]["state"], "ok", "{}", waited.body);

    // An empty answer where two items were: over the deletion threshold, nothing is deleted.
    source.set(&[]);
    let emptied = app.post("/api/v1/integrations/repos/sync", json!({})).await;
    assert_eq!(counts(&emptied), ("degraded".into(), json!(0), json!(0), json!(0)), "{}", emptied.body);
    assert!(
        emptied.body["status"]["error"].as_str().unwrap_or_default().contains("nothing was changed"),
        "{}",
        emptied.body
    );
    assert_eq!(app.get("/api/v1/blueprints/service/entities/pay").await.status, StatusCode::OK);

    // An item that fails to map fails alone, and nothing is deleted while it does.
    source.set(&[("cart", "COBOL"), ("billing", "Rust")]);
    let partial = app.post("/api/v1/integrations/repos/sync", json!({})).await;
    let status = &partial.body["status"];
    assert_eq!(
        (status["state"].as_str(), &status["failed"], &status["created"]),
        (Some("degraded"), &json!(1), &json!(1))
    );
    assert!(status["problems"][0].as_str().unwrap_or_default().starts_with("item 1: "), "{status}");
    assert_eq!(app.get("/api/v1/blueprints/service/entities/pay").await.status, StatusCode::OK, "not deleted");

    let shown = app.get("/api/v1/integrations/repos").await;
    assert_eq!(shown.body["integration"]["status"]["state"], "degraded", "the last pull is the status");
}

#[tokio::test]
async fn the_demo_pulls_its_inventory_and_takes_deployment_notices() {
    use portolan_server::demo::integrations as demo;
    let app = spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let source = demo::start_source().await.expect("source");
    let url = demo::load(&app.state, &source).await.expect("integrations").expect("a new ingest URL");
    assert_eq!(demo::load(&app.state, &source).await.expect("again"), None, "loaded twice: the URL stays secret");

    let pulled = app.post("/api/v1/integrations/cloud-inventory/sync", json!({})).await;
    assert_eq!(pulled.body["status"]["state"], "ok", "{}", pulled.body);
    assert_eq!(pulled.body["status"]["fetched"], 5, "three pages of the inventory");
    let db = app.get("/api/v1/blueprints/resource/entities/orders-db").await;
    assert_eq!(db.body["entity"]["relations"]["system"], "cart-system", "{}", db.body);

    let notice = json!({"id": "n-1", "service": "cart-service", "version": "2.0.1", "status": "succeeded",
                        "finishedAt": "2026-12-06T10:00:00Z"});
    let sent =
        reqwest::Client::new().post(&url).header("x-deploy-token", demo::DEPLOY_TOKEN).json(&notice).send().await;
    assert_eq!(sent.expect("sent").status(), StatusCode::ACCEPTED);
    app.drain_jobs().await;
    let deployment = app.get("/api/v1/blueprints/deployment/entities/cart-service-2.0.1").await;
    assert_eq!(deployment.status, StatusCode::OK, "{}", deployment.body);
    assert_eq!(deployment.body["entity"]["properties"]["strategy"], "canary");
    assert_eq!(deployment.body["entity"]["relations"]["service"], "cart-service");
}

#[tokio::test]
async fn events_are_kept_for_their_integration_s_retention_and_then_deleted() {
    let clock = crate::ManualClock::at(1_800_000_000_000);
    let app = crate::TestApp::builder().clock(clock.clone()).start().await;
    app.with_service_blueprints().await;
    let mut urls = Vec::new();
    for (identifier, days) in [("short", 7), ("long", 30)] {
        let mut hook = github_webhook();
        hook["identifier"] = json!(identifier);
        hook["security"] = Value::Null;
        hook["eventRetentionDays"] = json!(days);
        let created = app.post("/api/v1/integrations", hook).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        urls.push(created.body["integration"]["ingestUrl"].as_str().expect("url").to_string());
    }
    for url in &urls {
        let sent = reqwest::Client::new().post(url).header("x-github-event", "star").json(&json!({})).send().await;
        assert_eq!(sent.expect("sent").status(), StatusCode::ACCEPTED);
    }
    app.drain_jobs().await;
    clock.advance(8 * 86_400_000);
    assert_eq!(app.state.integrations.prune_events().await.expect("pruned"), 1);
    assert_eq!(app.get("/api/v1/integrations/short/events").await.body["events"], json!([]));
    let kept = app.get("/api/v1/integrations/long/events").await;
    assert_eq!(kept.body["events"].as_array().map(Vec::len), Some(1), "kept for 30 days: {}", kept.body);
}

#[tokio::test]
async fn a_flood_of_a_million_items_fails_its_own_event_and_the_next_event_goes_in() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let mut hook = github_webhook();
    hook["security"] = Value::Null;
    hook["mapping"]["resources"][0]["selector"]["query"] = json!("true");
    hook["mapping"]["resources"][0]["port"]["itemsToParse"] = json!(".body.items");
    let created = app.post("/api/v1/integrations", hook).await;
    let url = created.body["integration"]["ingestUrl"].as_str().expect("url").to_string();
    let client = reqwest::Client::new();

    // A million items in one delivery (about 12 MiB): accepted, and failed by the mapping's limits.
    let items: Vec<Value> = (0..1_000_000).map(|n| json!({"n": n})).collect();
    let flood = json!({"repository": {"name": "cart", "language": "Rust"}, "items": items});
    let sent = client.post(&url).json(&flood).send().await.expect("sent");
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let normal = json!({"repository": {"name": "cart", "language": "Rust"}, "items": [{"n": 1}]});
    let sent = client.post(&url).json(&normal).send().await.expect("sent");
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    app.drain_jobs().await;

    let log = app.get("/api/v1/integrations/github/events").await;
    let events = log.body["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{}", log.body);
    let (newest, flooded) = (&events[0], &events[1]);
    assert_eq!(flooded["state"], "failed", "{}", flooded["items"]);
    let error = flooded["items"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("ran longer than") || error.contains("used more than"), "a clear reason: {error}");
    assert_eq!(newest["state"], "done", "{}", newest["items"]);
    assert_eq!(app.get("/api/v1/blueprints/service/entities/cart").await.status, StatusCode::OK);

    let oversize = client.post(&url).body(vec![b' '; 26 * 1024 * 1024]).send().await.expect("sent");
    assert_eq!(oversize.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
