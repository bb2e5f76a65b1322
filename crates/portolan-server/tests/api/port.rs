//! Port's API: its paths (`/v1/...`) answer as the API's own (`/api/v1/...`), and its clients
//! sign in with client credentials traded at `POST /v1/auth/access_token`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{ManualClock, TestApp, service, spawn_app};

#[tokio::test]
async fn ports_paths_answer_as_the_apis_own() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    app.member("ana", &["team-cart"]).await;
    // Written through Port's paths, with Port's query parameters.
    let created = app.post("/v1/blueprints/service/entities?upsert=true", service("cart")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["ok"], true);
    let action = json!({"identifier": "restart", "title": "Restart", "trigger": {"type": "self-service",
        "operation": "DAY-2", "blueprintIdentifier": "service", "userInputs": {"properties": {}}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service",
            "mapping": {"identifier": "{{ .entity.identifier }}", "properties": {"replicas": 1}}}});
    let saved = app.post("/v1/actions", action).await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);

    let search = json!({"combinator": "and", "rules": [{"property": "$identifier", "operator": "=", "value": "cart"}]});
    let aggregate = json!({"func": "count", "query": {"combinator": "and", "rules": [
        {"property": "$blueprint", "operator": "=", "value": "service"}]}});
    let requests: [(Method, &str, Option<Value>); 12] = [
        (Method::GET, "/blueprints", None),
        (Method::GET, "/blueprints/service", None),
        (Method::GET, "/blueprints/service/entities", None),
        (Method::GET, "/blueprints/service/entities/cart", None),
        (Method::POST, "/blueprints/service/entities/search", Some(json!({"query": search}))),
        (Method::POST, "/entities/search", Some(json!({"query": search}))),
        (Method::POST, "/entities/aggregate", Some(aggregate)),
        (Method::GET, "/blueprints/service/permissions", None),
        (Method::GET, "/actions", None),
        (Method::GET, "/actions/runs", None),
        (Method::GET, "/teams", None),
        (Method::GET, "/blueprints/nope/entities/cart", None),
    ];
    for (method, path, body) in requests {
        let ours = app.call(method.clone(), &format!("/api/v1{path}"), body.clone()).await;
        let ports = app.call(method.clone(), &format!("/v1{path}"), body).await;
        assert_eq!((ports.status, &ports.body), (ours.status, &ours.body), "{method} {path}");
        // Every request of the table succeeds but the last, which asks for what does not exist.
        let expected_ok = !path.contains("/nope/");
        assert_eq!(ours.body["ok"], expected_ok, "{method} {path}: {}", ours.body);
    }
    let teams = app.get("/v1/teams").await;
    let cart = teams.body["teams"].as_array().into_iter().flatten().find(|t| t["name"] == "team-cart");
    assert_eq!(cart.map(|t| t["users"][0]["identifier"].clone()), Some(json!("ana")), "{}", teams.body);
    let unknown = app.get("/v1/no-such-route").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["ok"], false);
}

async fn trade(app: &TestApp, client_id: &str, secret: &str) -> crate::Reply {
    app.call_anonymously(
        Method::POST,
        "/v1/auth/access_token",
        Some(json!({"clientId": client_id, "clientSecret": secret})),
    )
    .await
}

#[tokio::test]
async fn client_credentials_trade_for_an_access_token_that_expires() {
    let clock = ManualClock::at(1_800_000_000_000);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    let ana = app.member("ana", &[]).await;

    // Ana makes her own; she may not make another's.
    let made = app.call_as(Method::POST, "/api/v1/users/ana/credentials", &ana, None).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let client_id = made.body["credentials"]["clientId"].as_str().expect("client id").to_string();
    let secret = made.body["credentials"]["clientSecret"].as_str().expect("secret").to_string();
    let others = app.call_as(Method::POST, "/api/v1/users/admin@test/credentials", &ana, None).await;
    assert_eq!(others.status, StatusCode::FORBIDDEN, "{}", others.body);
    let shown = app.call_as(Method::GET, "/api/v1/users/ana/credentials", &ana, None).await;
    assert_eq!(shown.body["credentials"]["clientId"], client_id.as_str());
    assert_eq!(shown.body["credentials"]["clientSecret"], Value::Null, "the secret is shown once");

    let traded = trade(&app, &client_id, &secret).await;
    assert_eq!(traded.status, StatusCode::OK, "{}", traded.body);
    assert_eq!((&traded.body["expiresIn"], &traded.body["tokenType"]), (&json!(10_800), &json!("Bearer")));
    let token = traded.body["accessToken"].as_str().expect("token").to_string();
    let me = app.call_as(Method::GET, "/v1/auth/me", &token, None).await;
    assert_eq!(me.body["user"]["identifier"], "ana", "{}", me.body);
    assert_eq!(
        app.call_as(Method::GET, "/v1/blueprints", &secret, None).await.status,
        StatusCode::UNAUTHORIZED,
        "a secret is not a token"
    );

    // Three hours later the access token has expired; the credentials still trade.
    clock.advance(3 * 3_600_000 + 1);
    let expired = app.call_as(Method::GET, "/v1/blueprints", &token, None).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.error_code(), "token_expired");
    assert_eq!(trade(&app, &client_id, &secret).await.status, StatusCode::OK);
    // A day after they expired, the sweeper deletes them.
    let tokens = |app: &TestApp| {
        let state = app.state.clone();
        async move { state.core.store().read().await.expect("read").api_tokens(Some("ana")).await.expect("tokens") }
    };
    let before = tokens(&app).await.len();
    clock.advance(86_400_000);
    assert_eq!(app.state.identity.delete_expired_access_tokens().await.expect("deleted"), 1);
    assert_eq!(tokens(&app).await.len(), before - 1, "the one traded later expired less than a day ago");

    // A rotation keeps the client id and ends the old secret.
    let rotated = app.call_as(Method::POST, "/api/v1/users/ana/credentials", &ana, None).await;
    assert_eq!(rotated.body["credentials"]["clientId"], client_id.as_str());
    let new_secret = rotated.body["credentials"]["clientSecret"].as_str().expect("secret").to_string();
    assert_ne!(new_secret, secret);
    let old = trade(&app, &client_id, &secret).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.body);
    assert_eq!(trade(&app, &client_id, &new_secret).await.status, StatusCode::OK);

    // Wrong secrets are throttled as failed sign-ins are, and recorded in the audit log.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(trade(&app, &client_id, "pcs_guess").await.status);
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let log = app.get("/api/v1/audit-log?action=login.failed").await;
    assert!(log.body.to_string().contains(&client_id), "{}", log.body);
    assert!(!log.body.to_string().contains("pcs_guess"), "the guess is not kept");

    // A bad body is refused by field.
    let bad = app.call_anonymously(Method::POST, "/v1/auth/access_token", Some(json!({"clientId": 3}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);

    // Deleted credentials trade no more.
    let deleted = app.call_as(Method::DELETE, "/api/v1/users/ana/credentials", &ana, None).await;
    assert_eq!(deleted.status, StatusCode::OK);
    clock.advance(3_600_000);
    assert_eq!(trade(&app, &client_id, &new_secret).await.status, StatusCode::UNAUTHORIZED);
}

/// The receiver of `tests/webhook-receiver`, checking deliveries with `key`: its URL.
async fn receiver(key: &str) -> (String, tokio::process::Child) {
    use tokio::io::AsyncBufReadExt;
    let dir = crate::npm_harness("webhook-receiver", "standardwebhooks");
    let mut child = tokio::process::Command::new("node")
        .arg("receiver.mjs")
        .current_dir(dir)
        .env("WEBHOOK_KEY", key)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the receiver");
    let stdout = child.stdout.take().expect("stdout");
    let port = tokio::io::BufReader::new(stdout).lines().next_line().await.expect("read").expect("the port");
    (format!("http://127.0.0.1:{}/hook", port.trim()), child)
}

#[tokio::test]
async fn a_webhook_without_a_signing_secret_is_signed_with_the_servers_key_for_both_schemes() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let member = app.member("mia", &[]).await;
    assert_eq!(
        app.call_as(Method::GET, "/api/v1/webhook-signing-key", &member, None).await.status,
        StatusCode::FORBIDDEN
    );
    let key = app.get("/api/v1/webhook-signing-key").await.body["key"].as_str().expect("key").to_string();
    assert!(key.starts_with("whsec_"), "{key}");
    assert_eq!(app.get("/api/v1/webhook-signing-key").await.body["key"], key.as_str(), "made once");
    let listed = app.get("/api/v1/secrets").await;
    assert!(!listed.body.to_string().contains("signing-key"), "not among the secrets: {}", listed.body);

    let (url, _receiver) = receiver(&key).await;
    // As Port documents a webhook action: no signingSecret.
    let action = json!({"identifier": "notify", "title": "Notify",
        "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "service",
                    "userInputs": {"properties": {}}},
        "invocationMethod": {"type": "WEBHOOK", "url": url, "synchronized": true, "body": {"hello": "{{ .trigger.by }}"}}});
    let created = app.post("/v1/actions", action).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = crate::actions::start_run(&app, "notify", json!({})).await;
    let done = crate::run_until(&app, &id, std::time::Duration::from_secs(10), crate::ended).await;
    assert_eq!(done["run"]["status"], "SUCCESS", "both signatures held: {done}");

    // After a rotation, a receiver still holding the old key refuses the delivery.
    let rotated = app.post("/api/v1/webhook-signing-key/rotate", json!({})).await;
    assert_ne!(rotated.body["key"], key.as_str());
    let id = crate::actions::start_run(&app, "notify", json!({})).await;
    let done = crate::run_until(&app, &id, std::time::Duration::from_secs(10), crate::ended).await;
    assert_eq!(done["run"]["status"], "FAILURE", "{done}");
    assert!(done["run"]["reason"].as_str().unwrap_or_default().contains("401"), "{done}");
    let log = app.get("/api/v1/audit-log?action=signing-key.read").await;
    assert_eq!(log.body["records"].as_array().map(Vec::len), Some(2), "each reading is audited: {}", log.body);
}

#[tokio::test]
async fn ports_documented_definitions_are_accepted_as_written_and_what_differs_is_named() {
    let app = spawn_app().await;
    // A blueprint as Port documents one: display fields on relations and computed properties,
    // direct ownership, a changelog destination.
    let blueprint = json!({
        "identifier": "microservice", "title": "Microservice", "icon": "Microservice",
        "schema": {"properties": {"language": {"type": "string", "enum": ["Go", "Rust"],
                                               "enumColors": {"Go": "blue", "Rust": "orange"}},
                                  "dashboard": {"type": "object", "format": "labeled-url"},
                                  "released": {"type": "string", "format": "date"},
                                  "contact": {"type": "string", "format": "idn-email"},
                                  "api": {"type": "string", "format": "proto"},
                                  "tags": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
                                  "errorRate": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                                  "scaling": {"type": "object", "required": ["region"], "additionalProperties": false,
                                              "properties": {"region": {"type": "string"},
                                                             "replicas": {"type": "integer", "minimum": 1}}},
                                  "plan": {"type": "object", "enum": [{"tier": "gold"}, {"tier": "silver"}]}},
                   "required": []},
        "calculationProperties": {"slug": {"title": "Slug", "icon": "DefaultProperty", "description": "for URLs",
            "calculation": ".identifier | ascii_downcase", "type": "string", "colorized": true,
            "colors": {"cart": "green"}},
            "systemLanguage": {"title": "Systems language", "type": "boolean",
                               "calculation": ".properties.language | IN(\"Rust\", \"Go\")"}},
        "aggregationProperties": {},
        "relations": {"depends": {"title": "Depends on", "description": "what it calls", "target": "microservice",
                                  "required": false, "many": true}},
        "ownership": {"type": "Direct"},
        "changelogDestination": {"type": "WEBHOOK", "url": "https://example.com/changes"}
    });
    let created = app.post("/v1/blueprints", blueprint.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let shown = app.get("/v1/blueprints/microservice").await;
    assert_eq!(shown.body["blueprint"]["relations"]["depends"]["description"], "what it calls");
    assert_eq!(shown.body["blueprint"]["changelogDestination"], blueprint["changelogDestination"], "kept");
    let entity = json!({"identifier": "cart", "properties": {"language": "Rust",
        "dashboard": {"url": "https://grafana.example/d/cart", "displayText": "Cart latency"},
        "released": "2026-12-01", "contact": "jürgen@bücher.de", "tags": ["web", "shop"], "errorRate": 0.02,
        "scaling": {"region": "eu", "replicas": 3}, "plan": {"tier": "gold"}}});
    let written = app.post("/v1/blueprints/microservice/entities", entity).await;
    assert_eq!(written.status, StatusCode::CREATED, "{}", written.body);
    assert_eq!(written.body["entity"]["properties"]["systemLanguage"], true, "jq's IN: {}", written.body);
    let bad = json!({"identifier": "bad", "properties": {"dashboard": {"href": "x"}, "released": "2026-13-01",
        "tags": ["a", "a"], "errorRate": 1, "scaling": {"replicas": 0, "zone": "a"}, "plan": {"tier": "bronze"}}});
    let refused = app.post("/v1/blueprints/microservice/entities", bad).await;
    assert_eq!(
        refused.detail_paths(),
        [
            "/properties/dashboard/url",
            "/properties/dashboard/href",
            "/properties/released",
            "/properties/tags/1",
            "/properties/errorRate",
            "/properties/scaling/region",
            "/properties/scaling/replicas",
            "/properties/scaling/zone",
            "/properties/plan"
        ],
        "every problem at once: {}",
        refused.body
    );

    // An action as Port documents one: a webhook through Port's agent, without a signing secret,
    // enum colours on an input, published.
    let action = json!({
        "identifier": "scaffold", "title": "Scaffold", "publish": true,
        "trigger": {"type": "self-service", "operation": "CREATE", "blueprintIdentifier": "microservice",
            "userInputs": {"properties": {"tier": {"type": "string", "enum": ["gold", "silver"],
                                                   "enumColors": {"gold": "yellow", "silver": "lightGray"},
                                                   "titles": {"gold": {"title": "Gold (24/7)"}}},
                                          "base": {"type": "string", "format": "entity", "blueprint": "microservice",
                                                   "sort": {"property": "$updatedAt", "order": "DESC"}}},
                           "required": []}},
        "invocationMethod": {"type": "WEBHOOK", "url": "https://example.com/scaffold", "agent": true,
                             "synchronized": true, "method": "POST"}
    });
    let saved = app.post("/v1/actions", action).await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);
    assert_eq!(saved.body["action"]["invocationMethod"]["agent"], true);

    // A DAY-2 action whose condition is Port's `"type": "SEARCH"` query: offered only where it holds.
    let restart = json!({
        "identifier": "restart-rust", "title": "Restart",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "microservice",
            "condition": {"type": "SEARCH", "combinator": "and",
                          "rules": [{"property": "language", "operator": "=", "value": "Rust"}]}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "microservice",
            "mapping": {"identifier": "{{ .entity.identifier }}", "properties": {"language": "Rust"}}}
    });
    let saved_restart = app.post("/v1/actions", restart).await;
    assert_eq!(saved_restart.status, StatusCode::CREATED, "{}", saved_restart.body);
    let go = json!({"identifier": "gopher", "properties": {"language": "Go"}});
    assert_eq!(app.post("/v1/blueprints/microservice/entities", go).await.status, StatusCode::CREATED);
    let on_rust = app.post("/v1/actions/restart-rust/runs", json!({"entity": "cart", "properties": {}})).await;
    assert!(on_rust.status.is_success(), "{}", on_rust.body);
    let on_go = app.post("/v1/actions/restart-rust/runs", json!({"entity": "gopher", "properties": {}})).await;
    assert!(on_go.status.is_client_error(), "the condition does not hold for a Go service: {}", on_go.body);

    // What would behave differently is refused, saying what Portolan does instead.
    let mut inherited = blueprint.clone();
    inherited["identifier"] = json!("inherits");
    inherited["relations"] = json!({});
    inherited["ownership"] = json!({"type": "Inherited", "path": "depends"});
    let refused = app.post("/v1/blueprints", inherited).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.detail_paths(), ["/ownership"]);
    assert!(refused.body.to_string().contains("direct ownership only"), "{}", refused.body);
    let mut unpublished = saved.body["action"].clone();
    unpublished["identifier"] = json!("draft");
    unpublished["publish"] = json!(false);
    for key in ["createdAt", "createdBy", "updatedAt", "updatedBy"] {
        unpublished.as_object_mut().map(|a| a.remove(key));
    }
    let refused = app.post("/v1/actions", unpublished).await;
    assert_eq!(refused.detail_paths(), ["/publish"], "{}", refused.body);
}

#[tokio::test]
async fn bulk_writes_take_ports_options_and_answer_in_its_shape_on_v1() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let mut elsewhere = service("stock");
    elsewhere["relations"]["system"] = json!("warehouse");
    let bad = json!({"identifier": "bad", "properties": {"language": 7}});

    // validation_only: every item checked, nothing written.
    let checked = app
        .post(
            "/v1/blueprints/service/entities/bulk?upsert=true&validation_only=true",
            json!({"entities": [service("cart"), bad.clone()]}),
        )
        .await;
    assert_eq!(checked.status, StatusCode::MULTI_STATUS, "{}", checked.body);
    assert_eq!(checked.body["entities"], json!([{"index": 0, "identifier": "cart", "created": true}]));
    assert_eq!(checked.body["errors"][0]["index"], 1);
    assert_eq!(checked.body["errors"][0]["statusCode"], 422);
    assert_eq!(app.get("/api/v1/blueprints/service/entities/cart").await.status, StatusCode::NOT_FOUND);

    // Without create_missing_related_entities a relation to nothing fails its item; with it,
    // the target is made bare. Ocean's sync parameters are accepted.
    let refused = app
        .post("/api/v1/blueprints/service/entities/bulk?upsert=true", json!({"entities": [elsewhere.clone()]}))
        .await;
    assert_eq!(refused.body["results"][0]["result"], "error", "{}", refused.body);
    let path = "/v1/blueprints/service/entities/bulk?upsert=true&merge=true&create_missing_related_entities=true\
                &ocean_info_event_type=RESYNC&ocean_info_resync_id=r1";
    let written = app.post(path, json!({"entities": [elsewhere.clone(), service("cart")]})).await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
    assert_eq!(written.body["errors"], json!([]));
    assert_eq!(app.get("/api/v1/blueprints/system/entities/warehouse").await.status, StatusCode::OK);

    // The same again changes nothing: the answer says so and the version stays.
    let again =
        app.post("/api/v1/blueprints/service/entities/bulk?upsert=true", json!({"entities": [service("cart")]})).await;
    assert_eq!(again.body["results"][0]["result"], "unchanged", "{}", again.body);
    assert_eq!(app.get("/api/v1/blueprints/service/entities/cart").await.body["entity"]["version"], 1);

    // Port's bulk delete: each deleted or failing on its own.
    let deleted = app
        .post(
            "/v1/blueprints/service/bulk/entities/delete?delete_dependents=false",
            json!({"entities": ["cart", "ghost"]}),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::MULTI_STATUS, "{}", deleted.body);
    assert_eq!(deleted.body["deletedEntities"], json!(["cart"]));
    assert_eq!(deleted.body["errors"][0]["identifier"], "ghost");
    assert_eq!(deleted.body["errors"][0]["error"], "not_found");
}

#[tokio::test]
async fn an_ocean_datasource_owns_what_it_wrote_and_its_record_is_admins() {
    let app = spawn_app().await;
    app.with_service_blueprints().await;
    let agent = "port-ocean/shipyard/0.3.0/ship/exporter";
    for id in ["a1", "a2", "a3"] {
        let written = app
            .client
            .post(format!("{}/v1/blueprints/service/entities/bulk?upsert=true", app.base))
            .header("user-agent", agent)
            .json(&json!({"entities": [service(id)]}))
            .send()
            .await
            .expect("bulk");
        assert_eq!(written.status(), StatusCode::OK);
    }
    app.post("/api/v1/blueprints/service/entities", service("by-hand")).await;
    let page = |from: Option<&str>| {
        let mut body =
            json!({"datasource_prefix": "port-ocean/shipyard/", "datasource_suffix": "/ship/exporter", "limit": 2});
        if let Some(from) = from {
            body["from"] = json!(from);
        }
        app.post("/v1/blueprints/entities/datasource-entities", body)
    };
    let first = page(None).await;
    let ids = |reply: &crate::Reply| -> Vec<String> {
        reply.body["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["identifier"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(ids(&first), ["a1", "a2"], "{}", first.body);
    let next = first.body["next"].as_str().expect("a next page").to_string();
    let second = page(Some(&next)).await;
    assert_eq!(ids(&second), ["a3"], "entities written by others are not the datasource's: {}", second.body);
    assert!(second.body.get("next").is_none());
    // Ocean's own search for what it wrote: `$datasource` in the query language.
    let mine = json!({"combinator": "and", "rules": [
        {"property": "$datasource", "operator": "contains", "value": "port-ocean/shipyard/"},
        {"property": "$datasource", "operator": "contains", "value": "/ship/exporter"}]});
    let searched = app
        .post(
            "/v1/entities/search?exclude_calculated_properties=true&include=blueprint&include=identifier",
            mine.clone(),
        )
        .await;
    assert_eq!(ids(&searched), ["a1", "a2", "a3"], "{}", searched.body);
    // A deleted entity leaves its datasource: made again by hand, it is nobody's.
    let deleted = app.post("/v1/blueprints/service/bulk/entities/delete", json!({"entities": ["a1"]})).await;
    assert_eq!(deleted.body["deletedEntities"], json!(["a1"]), "{}", deleted.body);
    app.post("/api/v1/blueprints/service/entities", service("a1")).await;
    let searched = app.post("/v1/entities/search", mine).await;
    assert_eq!(ids(&searched), ["a2", "a3"], "{}", searched.body);

    // The installation record: made once, changed by PATCH, its errors named, admins only.
    let made = app
        .post(
            "/v1/integration",
            json!({"installationId": "ship", "installationAppType": "shipyard", "version": "0.3.0"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let twice = app.post("/v1/integration", json!({"installationId": "ship"})).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let bad = app.post("/v1/integration", json!({"installationId": "x y", "config": []})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["details"].as_array().map(Vec::len), Some(2), "{}", bad.body);
    let patched = app.call(Method::PATCH, "/v1/integration/ship", Some(json!({"version": "0.4.0"}))).await;
    assert_eq!(patched.body["integration"]["version"], "0.4.0", "{}", patched.body);
    assert_eq!(patched.body["integration"]["installationAppType"], "shipyard");
    let missing = app.get("/v1/integration/nope?oceanCoreVersion=0.56.2&isPolling=false").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["ok"], false);
    let ana = app.member("ana", &[]).await;
    let refused = app.call_as(Method::GET, "/v1/integration/ship", &ana, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn identifiers_with_slashes_are_one_encoded_segment_in_every_address() {
    let app = spawn_app().await;
    let project = json!({"identifier": "gitlabProject", "title": "GitLab project",
        "schema": {"properties": {"visibility": {"type": "string"}}},
        "relations": {"parent": {"target": "gitlabProject", "many": false}}});
    assert_eq!(app.post("/v1/blueprints", project).await.status, StatusCode::CREATED);
    // Port's GitLab integration names a project by its `path_with_namespace`.
    let created = app
        .post("/v1/blueprints/gitlabProject/entities", json!({"identifier": "shop/backend/cart", "title": "Cart"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let child = json!({"identifier": "shop/backend/cart-docs", "relations": {"parent": "shop/backend/cart"}});
    assert_eq!(app.post("/v1/blueprints/gitlabProject/entities", child).await.status, StatusCode::CREATED);

    let address = "/v1/blueprints/gitlabProject/entities/shop%2Fbackend%2Fcart";
    let read = app.get(address).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["entity"]["identifier"], "shop/backend/cart");
    let patched = app.patch(address, json!({"properties": {"visibility": "internal"}})).await;
    assert_eq!(patched.body["entity"]["properties"]["visibility"], "internal", "{}", patched.body);

    // The portal links to it as one segment, and the page at that address is the project's.
    let person = json!({"identifier": "gl@example.com", "role": "admin", "password": crate::web::PASSWORD});
    assert_eq!(app.post("/api/v1/users", person).await.status, StatusCode::CREATED);
    let session = crate::web::sign_in(&app, "gl@example.com").await;
    let (status, list) = crate::web::page(&app, "/catalog/gitlabProject", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains(r#"href="/catalog/gitlabProject/shop%2Fbackend%2Fcart""#), "{list}");
    let (status, page) = crate::web::page(&app, "/catalog/gitlabProject/shop%2Fbackend%2Fcart-docs", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"href="/catalog/gitlabProject/shop%2Fbackend%2Fcart""#), "its parent's link: {page}");

    for bad in ["/shop", "shop/", "shop//cart", "shop/../cart"] {
        let refused = app.post("/v1/blueprints/gitlabProject/entities", json!({"identifier": bad})).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {}", refused.body);
    }
    let refused = app.post("/api/v1/blueprints/_team/entities", json!({"identifier": "a/b"})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "a team is one name: {}", refused.body);

    let referenced = app.delete(address).await;
    assert_eq!(referenced.status, StatusCode::CONFLICT, "its child still points at it: {}", referenced.body);
    assert!(app.delete(&format!("{address}-docs")).await.status.is_success());
    assert!(app.delete(address).await.status.is_success());
    assert_eq!(app.get(address).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_encrypted_input_is_stored_and_sent_as_ports_ciphertext() {
    use aes_gcm::aead::Aead;
    use aes_gcm::{AesGcm, KeyInit, aead::consts::U16, aes::Aes256};
    use base64::Engine;

    let app = spawn_app().await;
    let action = json!({
        "identifier": "rotate", "title": "Rotate a credential",
        "trigger": {"type": "self-service", "operation": "CREATE", "userInputs": {"properties": {
            "password": {"type": "string", "encryption": "aes256-gcm"},
            "note": {"type": "string"}}, "required": ["password"]}},
        "invocationMethod": {"type": "WEBHOOK", "url": "https://example.com/rotate"}
    });
    let saved = app.post("/v1/actions", action).await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);
    let secret = "hunter2 and more";
    let run = app.post("/api/v1/actions/rotate/runs", json!({"properties": {"password": secret, "note": "q3"}})).await;
    assert!(run.status.is_success(), "{}", run.body);
    let stored = app.get(&format!("/api/v1/actions/runs/{}", run.body["run"]["id"].as_str().expect("id"))).await;
    let sealed = stored.body["run"]["inputs"]["password"].as_str().expect("ciphertext").to_string();
    assert_eq!(stored.body["run"]["inputs"]["note"], "q3");
    assert!(!stored.body.to_string().contains(secret), "the run never holds the value: {}", stored.body);

    // A receiver written for Port decrypts it: the key's first 32 bytes, IV (16) | ciphertext | tag.
    let key = app.get("/api/v1/webhook-signing-key").await.body["key"].as_str().expect("key").to_string();
    let bytes = base64::engine::general_purpose::STANDARD.decode(&sealed).expect("base64");
    let (iv, ciphertext) = bytes.split_at(16);
    let cipher = AesGcm::<Aes256, U16>::new_from_slice(&key.as_bytes()[..32]).expect("key");
    let iv: [u8; 16] = iv.try_into().expect("16 bytes");
    let plain = cipher.decrypt(&iv.into(), ciphertext).expect("decrypts with the signing key");
    assert_eq!(String::from_utf8(plain).expect("text"), secret);
    let log = app.get("/api/v1/audit-log?action=run.create").await;
    assert_eq!(log.body["records"].as_array().map(Vec::len), Some(1), "{}", log.body);
    assert!(!log.body.to_string().contains(secret), "nor does the audit log");
}

#[tokio::test]
async fn ports_computed_form_settings_apply_when_a_run_is_requested() {
    let app = spawn_app().await;
    let action = json!({
        "identifier": "provision", "title": "Provision",
        "trigger": {"type": "self-service", "operation": "CREATE", "userInputs": {
            "properties": {
                "language": {"type": "string", "enum": ["go", "python"]},
                "runtime": {"type": "string",
                            "enum": {"jqQuery": "if .form.language == \"go\" then [\"1.23\"] else [\"3.12\", \"3.13\"] end"}},
                "region": {"type": "string", "default": "eu", "disabled": true},
                "notes": {"type": "string"}},
            "required": {"jqQuery": "if .form.language == \"go\" then [\"runtime\", \"notes\"] else [\"runtime\"] end"},
            "steps": [{"title": "Basics", "order": ["language", "runtime", "region"]},
                      {"title": "Go only", "order": ["notes"], "visible": {"jqQuery": ".form.language == \"go\""}}]}},
        "invocationMethod": {"type": "WEBHOOK", "url": "https://example.com/provision"}
    });
    let saved = app.post("/v1/actions", action).await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);

    let refused =
        app.post("/api/v1/actions/provision/runs", json!({"properties": {"language": "go", "runtime": "3.12"}})).await;
    assert_eq!(refused.detail_paths(), ["/properties/runtime", "/properties/notes"], "{}", refused.body);
    let run = app
        .post(
            "/api/v1/actions/provision/runs",
            json!({"properties": {"language": "python", "runtime": "3.13", "region": "us", "notes": "x"}}),
        )
        .await;
    assert!(run.status.is_success(), "{}", run.body);
    assert_eq!(
        run.body["run"]["inputs"],
        json!({"language": "python", "runtime": "3.13", "region": "eu"}),
        "a disabled input keeps its default; a hidden step's input is dropped"
    );

    let person = json!({"identifier": "form@example.com", "role": "admin", "password": crate::web::PASSWORD});
    assert_eq!(app.post("/api/v1/users", person).await.status, StatusCode::CREATED);
    let session = crate::web::sign_in(&app, "form@example.com").await;
    let (status, page) = crate::web::page(&app, "/actions/provision", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-input="region" data-disabled"#), "{page}");
    assert!(page.contains(r#"data-input="notes" hidden"#), "the Go step starts hidden: {page}");
    assert!(page.contains(r#"<option value="3.13""#), "choices computed for the form as it starts: {page}");
}
