//! Notifications: a requester is told in their inbox when their run is decided or ends, and at
//! their webhook (Slack format here) when they ask for it, with retries and the outcome kept.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::actions::{Answer, Receiver};
use crate::{TestApp, spawn_app};

async fn request(app: &TestApp, token: &str) -> String {
    let body = json!({"entity": "cart", "properties": {"replicas": 4}});
    let started = app.call_as(Method::POST, "/api/v1/actions/scale/runs", token, Some(body)).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    started.body["run"]["id"].as_str().expect("id").to_string()
}

async fn decide(app: &TestApp, id: &str, status: &str) {
    let body = json!({"status": status, "description": "checked"});
    let decided = app.patch(&format!("/api/v1/actions/runs/{id}/approval"), body).await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.body);
}

async fn inbox(app: &TestApp, token: &str) -> Value {
    let reply = app.call_as(Method::GET, "/api/v1/notifications", token, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn topics(inbox: &Value) -> Vec<String> {
    inbox["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["topic"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_requester_is_told_in_the_inbox_when_their_run_is_decided_and_chooses_the_topics() {
    let app = spawn_app().await;
    crate::mcp::catalog_with_a_guarded_action(&app).await;
    let ana = app.member("ana", &["team-a"]).await;
    let bo = app.member("bo", &["team-b"]).await;

    let declined = request(&app, &ana).await;
    assert_eq!(inbox(&app, &ana).await["unread"], 0, "asking is not news");
    let approver = app.get("/api/v1/notifications").await.body;
    assert_eq!(topics(&approver), ["approval.needed"], "the approver the rule names is told: {approver}");
    assert_eq!(approver["notifications"][0]["title"], "Scale on cart by ana waits for your approval");
    assert_eq!(approver["notifications"][0]["link"], format!("/runs/{declined}"));
    decide(&app, &declined, "DECLINE").await;
    let approved = request(&app, &ana).await;
    decide(&app, &approved, "APPROVE").await;
    app.drain_jobs().await;

    let told = inbox(&app, &ana).await;
    assert_eq!(told["unread"], 2, "{told}");
    assert_eq!(topics(&told), ["run.approved", "run.declined"], "newest first, a success left out: {told}");
    let first = &told["notifications"][1];
    assert_eq!(first["link"], format!("/runs/{declined}"));
    assert!(first["title"].as_str().is_some_and(|t| t.contains("Scale on cart was declined")), "{first}");
    assert_eq!(inbox(&app, &bo).await["unread"], 0, "nobody else is told");

    // One is read; another's notification is not the caller's to mark.
    let id = first["id"].as_str().expect("id");
    let marked = app.call_as(Method::POST, &format!("/api/v1/notifications/{id}/read"), &ana, None).await;
    assert_eq!((marked.status, &marked.body["marked"]), (StatusCode::OK, &json!(1)));
    let theirs = app.call_as(Method::POST, &format!("/api/v1/notifications/{id}/read"), &bo, None).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let unread = app.call_as(Method::GET, "/api/v1/notifications?unread=true", &ana, None).await.body;
    assert_eq!(topics(&unread), ["run.approved"]);

    // Chosen: successes reach the inbox, declined runs no longer do.
    let muted = json!({"inbox": ["run.succeeded", "run.approved", "run.failed"]});
    let saved = app.call_as(Method::PUT, "/api/v1/notifications/preferences", &ana, Some(muted)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let again = request(&app, &ana).await;
    decide(&app, &again, "DECLINE").await;
    assert_eq!(inbox(&app, &ana).await["unread"], 1, "declined: left out");
    let all = app.call_as(Method::POST, "/api/v1/notifications/read", &ana, None).await;
    assert_eq!(all.body["marked"], 1);

    // A webhook that is no webhook is refused, by field.
    let bad = json!({"webhook": {"url": "ftp://hooks.example/x"}});
    let refused = app.call_as(Method::PUT, "/api/v1/notifications/preferences", &ana, Some(bad)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.detail_paths(), ["/webhook/url"]);
    let unknown = json!({"inbox": ["run.exploded"]});
    let refused = app.call_as(Method::PUT, "/api/v1/notifications/preferences", &ana, Some(unknown)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
}

#[tokio::test]
async fn a_webhook_gets_the_topics_it_asked_for_in_slack_format_and_a_failed_delivery_is_retried() {
    let app = spawn_app().await;
    crate::mcp::catalog_with_a_guarded_action(&app).await;
    let ana = app.member("ana", &["team-a"]).await;
    let slack = Receiver::start(vec![Answer(500, 0, vec![]), Answer(200, 0, vec![])]).await;
    let preferences = json!({"webhook": {"url": slack.url, "format": "slack"}, "webhookTopics": ["run.declined"]});
    let saved = app.call_as(Method::PUT, "/api/v1/notifications/preferences", &ana, Some(preferences)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);

    let declined = request(&app, &ana).await;
    decide(&app, &declined, "DECLINE").await;
    let approved = request(&app, &ana).await;
    decide(&app, &approved, "APPROVE").await;
    app.drain_jobs().await;

    let deliveries = slack.deliveries();
    assert_eq!(deliveries.len(), 2, "one failure, then the retry: {deliveries:?}");
    let text = deliveries[1].body["text"].as_str().expect("a Slack message");
    assert!(text.contains("Scale on cart was declined"), "{text}");
    assert!(text.contains(&format!("{}/runs/{declined}|open in Portolan>", app.base)), "{text}");
    let told = inbox(&app, &ana).await;
    let declined_note =
        told["notifications"].as_array().expect("list").iter().find(|n| n["topic"] == "run.declined").cloned();
    assert_eq!(declined_note.expect("in the inbox too")["delivery"], "webhook: delivered", "{told}");
    assert!(
        told["notifications"]
            .as_array()
            .expect("list")
            .iter()
            .all(|n| n["topic"] != "run.succeeded" || n["delivery"].is_null())
    );
}

#[tokio::test]
async fn the_header_counts_the_unread_and_the_inbox_page_lists_them() {
    let app = spawn_app().await;
    crate::mcp::catalog_with_a_guarded_action(&app).await;
    let password = app.patch("/api/v1/users/ana", json!({"password": crate::web::PASSWORD})).await;
    assert_eq!(password.status, StatusCode::OK, "{}", password.body);
    let session = crate::web::sign_in(&app, "ana").await;
    let token = app.member("ana", &["team-a"]).await;
    let run = request(&app, &token).await;
    decide(&app, &run, "DECLINE").await;
    let (status, page) = crate::web::page(&app, "/inbox", &session).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("aria-label=\"Inbox, 1 unread\""), "the header's count: {page}");
    assert!(page.contains(&format!("<a href=\"/runs/{run}\">Scale on cart was declined")), "{page}");
    assert!(page.contains("name=\"webhook_url\""), "the preferences form: {page}");

    // A webhook that is no webhook is refused on the page, naming the field; nothing is saved.
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("csrf");
    let fields = [("csrf", csrf), ("inbox", "run.failed"), ("webhook_url", "ftp://hooks.example/x")];
    let sent = crate::web::form_post(
        crate::web::browser().post(format!("{}/inbox/preferences", app.base)).header("cookie", &session),
        &fields,
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(sent.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = sent.text().await.expect("html");
    assert!(refused.contains("/webhook/url: an http(s) URL"), "{refused}");
    let kept = app.call_as(Method::GET, "/api/v1/notifications/preferences", &token, None).await.body;
    assert!(kept["preferences"]["webhook"].is_null(), "{kept}");

    // Her team's channel, chosen on the same page.
    assert!(page.contains("action=\"/inbox/teams/team-a\""), "a form per team: {page}");
    let fields = [
        ("csrf", csrf),
        ("topic", "ttl.expiring"),
        ("webhook_url", "https://hooks.example/team-a"),
        ("webhook_format", "slack"),
    ];
    let sent = crate::web::form_post(
        crate::web::browser().post(format!("{}/inbox/teams/team-a", app.base)).header("cookie", &session),
        &fields,
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let team = app.call_as(Method::GET, "/api/v1/teams/team-a/notification-preferences", &token, None).await.body;
    assert_eq!(team["preferences"]["topics"], json!(["ttl.expiring"]), "{team}");
    assert_eq!(team["preferences"]["webhook"]["format"], "slack", "{team}");
}

/// Whoever made an entity is told once, a day ahead, that one of its timers ends, with a link to
/// the action that extends it; a timer further off tells nobody yet.
#[tokio::test]
async fn the_maker_of_an_entity_is_told_a_day_before_its_ttl_ends_with_the_action_that_extends_it() {
    let app = spawn_app().await;
    let blueprint = json!({"identifier": "preview", "schema": {"properties": {
        "expiresAt": {"type": "string", "format": "timer", "title": "Expires"}}}});
    assert_eq!(app.post("/api/v1/blueprints", blueprint).await.status, StatusCode::CREATED);
    let extend = json!({
        "identifier": "extend_preview", "title": "Extend by a day",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "preview"},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "preview", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"expiresAt": "{{ .entity.properties.expiresAt }}"}}}
    });
    assert_eq!(app.post("/api/v1/actions", extend).await.status, StatusCode::CREATED);
    let at = |hours: i64| {
        let millis =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_millis() as i64;
        portolan_model::format_millis(millis + hours * 3_600_000)
    };
    for (id, hours) in [("pr-1", 5), ("pr-2", 72)] {
        let made = app
            .post(
                "/api/v1/blueprints/preview/entities",
                json!({"identifier": id, "properties": {"expiresAt": at(hours)}}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }

    let started = std::time::Instant::now();
    let told = loop {
        let inbox = app.get("/api/v1/notifications").await.body;
        let ending: Vec<Value> = inbox["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["topic"] == "ttl.expiring")
            .cloned()
            .collect();
        if !ending.is_empty() || started.elapsed() > std::time::Duration::from_secs(15) {
            break ending;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["title"], "pr-1 (preview) ends in about 5 h (expiresAt): extend it if it is still needed");
    assert_eq!(told[0]["link"], "/actions/extend_preview?entity=pr-1");
    // Told once: later sweeps find the notice already given.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let again = app.get("/api/v1/notifications").await.body;
    let count =
        again["notifications"].as_array().into_iter().flatten().filter(|n| n["topic"] == "ttl.expiring").count();
    assert_eq!(count, 1, "{again}");
}
