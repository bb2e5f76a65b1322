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
}
