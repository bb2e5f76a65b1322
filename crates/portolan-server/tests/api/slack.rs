//! The Slack app against a stand-in for Slack's Web API on loopback, which answers in Slack's
//! documented shapes (HTTP 200 with `ok`, Slack's error codes) and refuses what Slack refuses: a
//! wrong bot token, an unknown or expired `trigger_id`, a JSON body to `users.info`, and views or
//! messages beyond Block Kit's documented limits. Requests to the app are signed as Slack signs
//! them (`v0`, HMAC-SHA256 of `v0:{timestamp}:{body}`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::web::{PASSWORD, browser, form_post, page, sign_in};
use crate::{TestApp, run_until};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
const TEAM: &str = "T0PORTOLAN";

/// What the stand-in keeps: calls in order, triggers Slack handed out (valid three seconds), its
/// users, and the messages posted.
#[derive(Default)]
struct Workspace {
    calls: Vec<(String, Value)>,
    triggers: HashMap<String, Instant>,
    /// Slack user → (e-mail, confirmed).
    users: HashMap<String, (String, bool)>,
    /// (channel, ts) of every message posted.
    messages: Vec<(String, String)>,
}

#[derive(Clone)]
struct FakeSlack {
    url: String,
    workspace: Arc<Mutex<Workspace>>,
}

impl FakeSlack {
    async fn start(users: &[(&str, &str, bool)]) -> FakeSlack {
        let workspace = Arc::new(Mutex::new(Workspace::default()));
        {
            let mut w = workspace.lock().expect("lock");
            for (id, email, confirmed) in users {
                w.users.insert(id.to_string(), (email.to_string(), *confirmed));
            }
        }
        let app =
            axum::Router::new().route("/api/{method}", axum::routing::post(method)).with_state(Arc::clone(&workspace));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/api", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        FakeSlack { url, workspace }
    }

    /// A trigger, as Slack gives one with a command or a click.
    fn trigger(&self, id: &str) -> String {
        self.workspace.lock().expect("lock").triggers.insert(id.to_string(), Instant::now());
        id.to_string()
    }

    fn calls(&self, name: &str) -> Vec<Value> {
        let w = self.workspace.lock().expect("lock");
        w.calls.iter().filter(|(m, _)| m == name).map(|(_, body)| body.clone()).collect()
    }

    /// The timestamp of the first message posted to a channel.
    fn first_ts(&self, channel: &str) -> String {
        let w = self.workspace.lock().expect("lock");
        w.messages.iter().find(|(c, _)| c == channel).map(|(_, ts)| ts.clone()).expect("a message posted there")
    }

    /// Waits for a call of `name` that `check` accepts.
    async fn wait_for(&self, name: &str, check: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            if let Some(found) = self.calls(name).into_iter().find(|c| check(c)) {
                return found;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "no such {name} call: {:#?}", self.calls(name));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn slack_error(error: &str) -> axum::Json<Value> {
    axum::Json(json!({"ok": false, "error": error}))
}

async fn method(
    State(workspace): State<Arc<Mutex<Workspace>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {BOT_TOKEN}")) {
        return slack_error("invalid_auth");
    }
    let json_body =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    let body: Value = if json_body {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        // Slack's form encoding: each argument a field.
        Value::Object(url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), json!(v))).collect())
    };
    let mut w = workspace.lock().expect("lock");
    w.calls.push((name.clone(), body.clone()));
    match name.as_str() {
        "views.open" => {
            if !json_body {
                return slack_error("invalid_arguments");
            }
            let trigger = body["trigger_id"].as_str().unwrap_or_default();
            match w.triggers.remove(trigger) {
                None => return slack_error("invalid_trigger_id"),
                Some(issued) if issued.elapsed() > Duration::from_secs(3) => return slack_error("expired_trigger_id"),
                Some(_) => {}
            }
            if let Err(why) = check_view(&body["view"]) {
                return axum::Json(json!({"ok": false, "error": "invalid_arguments",
                    "response_metadata": {"messages": [format!("[ERROR] {why}")]}}));
            }
            axum::Json(json!({"ok": true, "view": {"id": "V0123", "team_id": TEAM, "type": "modal"}}))
        }
        "chat.postMessage" => {
            let Some(channel) = body["channel"].as_str().filter(|c| !c.is_empty()) else {
                return slack_error("channel_not_found");
            };
            if body["text"].as_str().is_none_or(str::is_empty) && body["blocks"].is_null() {
                return slack_error("no_text");
            }
            if let Err(why) = check_blocks(&body["blocks"], 50) {
                return axum::Json(json!({"ok": false, "error": "invalid_blocks", "errors": [why]}));
            }
            // A user's id posts to their direct messages with the app.
            let channel = match channel.strip_prefix('U') {
                Some(rest) => format!("D{rest}"),
                None => channel.to_string(),
            };
            let ts = format!("1765000000.{:06}", w.messages.len() + 1);
            w.messages.push((channel.clone(), ts.clone()));
            axum::Json(json!({"ok": true, "channel": channel, "ts": ts,
                "message": {"type": "message", "text": body["text"], "ts": ts}}))
        }
        "chat.update" => {
            let at = (
                body["channel"].as_str().unwrap_or_default().to_string(),
                body["ts"].as_str().unwrap_or_default().to_string(),
            );
            if !w.messages.contains(&at) {
                return slack_error("message_not_found");
            }
            if let Err(why) = check_blocks(&body["blocks"], 50) {
                return axum::Json(json!({"ok": false, "error": "invalid_blocks", "errors": [why]}));
            }
            axum::Json(json!({"ok": true, "channel": at.0, "ts": at.1, "text": body["text"]}))
        }
        "users.info" => {
            // users.info takes no JSON body: Slack reads its arguments from the form or the query.
            let user = if json_body { None } else { body["user"].as_str() };
            match user.and_then(|u| w.users.get(u).map(|found| (u, found))) {
                Some((id, (email, confirmed))) => axum::Json(json!({"ok": true, "user": {
                    "id": id, "team_id": TEAM, "name": email.split('@').next(), "deleted": false,
                    "is_email_confirmed": confirmed, "profile": {"email": email, "real_name": id}}})),
                None => slack_error("user_not_found"),
            }
        }
        _ => slack_error("unknown_method"),
    }
}

fn text_within(value: &Value, max: usize, what: &str) -> Result<(), String> {
    let text = value["text"].as_str().ok_or(format!("{what} has no text"))?;
    if text.is_empty() || text.chars().count() > max {
        return Err(format!("{what} must be 1 to {max} characters: {text:?}"));
    }
    Ok(())
}

/// Block Kit's documented limits for a modal.
fn check_view(view: &Value) -> Result<(), String> {
    if view["type"] != "modal" {
        return Err("a view's type must be modal".into());
    }
    for (part, required) in [("title", true), ("submit", false), ("close", false)] {
        if required || !view[part].is_null() {
            if view[part]["type"] != "plain_text" {
                return Err(format!("{part} must be plain_text"));
            }
            text_within(&view[part], 24, part)?;
        }
    }
    if view["private_metadata"].as_str().is_some_and(|m| m.len() > 3000) {
        return Err("private_metadata is longer than 3000 characters".into());
    }
    if view["callback_id"].as_str().is_some_and(|c| c.len() > 255) {
        return Err("callback_id is longer than 255 characters".into());
    }
    check_blocks(&view["blocks"], 100)
}

fn check_blocks(blocks: &Value, max: usize) -> Result<(), String> {
    let Some(blocks) = blocks.as_array() else { return Ok(()) };
    if blocks.len() > max {
        return Err(format!("more than {max} blocks"));
    }
    let mut ids = std::collections::HashSet::new();
    for block in blocks {
        if let Some(id) = block["block_id"].as_str()
            && (id.len() > 255 || !ids.insert(id))
        {
            return Err(format!("block_id {id:?} repeated or too long"));
        }
        match block["type"].as_str().unwrap_or_default() {
            "section" => text_within(&block["text"], 3000, "a section")?,
            "header" => text_within(&block["text"], 150, "a header")?,
            "context" => {
                let elements = block["elements"].as_array().ok_or("a context block has no elements")?;
                if elements.is_empty() || elements.len() > 10 {
                    return Err("a context block takes 1 to 10 elements".into());
                }
            }
            "actions" => {
                let elements = block["elements"].as_array().ok_or("an actions block has no elements")?;
                for button in elements {
                    text_within(&button["text"], 75, "a button")?;
                }
            }
            "input" => {
                text_within(&block["label"], 2000, "an input's label")?;
                let element = &block["element"];
                let action_id = element["action_id"].as_str().unwrap_or_default();
                if action_id.is_empty() || action_id.len() > 255 {
                    return Err("an input's element needs an action_id".into());
                }
                match element["type"].as_str().unwrap_or_default() {
                    "static_select" => {
                        let options = element["options"].as_array().ok_or("a static_select has no options")?;
                        if options.is_empty() || options.len() > 100 {
                            return Err("a static_select takes 1 to 100 options".into());
                        }
                        for option in options {
                            text_within(&option["text"], 75, "an option")?;
                            if option["value"].as_str().is_none_or(|v| v.len() > 150) {
                                return Err("an option's value must be at most 150 characters".into());
                            }
                        }
                    }
                    "number_input" if !element["is_decimal_allowed"].is_boolean() => {
                        return Err("a number_input needs is_decimal_allowed".into());
                    }
                    "plain_text_input" | "number_input" | "email_text_input" | "url_text_input" | "external_select"
                    | "checkboxes" | "datepicker" => {}
                    other => return Err(format!("no input element {other:?}")),
                }
            }
            other => return Err(format!("no block type {other:?}")),
        }
    }
    Ok(())
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// A request as Slack signs it, `seconds_ago` after it was made.
async fn signed(app: &TestApp, path: &str, body: String, seconds_ago: i64) -> reqwest::Response {
    let timestamp = (now_seconds() - seconds_ago).to_string();
    let signature = portolan_model::slack::signature(SIGNING_SECRET, &timestamp, body.as_bytes());
    reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .expect("sent")
}

fn command_body(user: &str, text: &str, trigger: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", "deprecated-verification-token"),
            ("team_id", TEAM),
            ("team_domain", "portolan"),
            ("channel_id", "C0DEPLOYS"),
            ("channel_name", "deploys"),
            ("user_id", user),
            ("user_name", user),
            ("command", "/portolan"),
            ("text", text),
            ("api_app_id", "A0PORTOLAN"),
            ("response_url", "https://hooks.slack.com/commands/T0PORTOLAN/1/abc"),
            ("trigger_id", trigger),
        ])
        .finish()
}

async fn command(app: &TestApp, user: &str, text: &str, trigger: &str) -> (StatusCode, Value) {
    let response = signed(app, "/slack/commands", command_body(user, text, trigger), 0).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON") })
}

async fn interact(app: &TestApp, payload: Value) -> (StatusCode, Value) {
    let body =
        url::form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish();
    let response = signed(app, "/slack/interactions", body, 0).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON") })
}

async fn slack_app(slack: &FakeSlack) -> TestApp {
    let url = slack.url.clone();
    let app = TestApp::builder()
        .settings(move |s| {
            s.slack = Some(portolan_server::slack::api::SlackSettings {
                signing_secret: SIGNING_SECRET.into(),
                bot_token: Some(BOT_TOKEN.into()),
                api_url: url,
            })
        })
        .start()
        .await;
    crate::mcp::catalog_with_a_guarded_action(&app).await;
    let email = json!({"properties": {"email": "ana@example.com"}});
    let set = app.patch("/api/v1/blueprints/_user/entities/ana", email).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    app
}

fn all_text(message: &Value) -> String {
    message.to_string()
}

/// Requests Slack did not sign, or signed long ago, are refused before anything is read; a
/// Slack user with the same confirmed e-mail address is linked at once, one without is given a
/// one-time link, and each searches as their own Portolan user.
#[tokio::test]
async fn slack_users_search_as_their_linked_portolan_user_and_unsigned_or_stale_requests_are_refused() {
    let slack = FakeSlack::start(&[("U0ANA", "ana@example.com", true), ("U0CY", "cy@example.com", false)]).await;
    let app = slack_app(&slack).await;

    let body = command_body("U0ANA", "search cart", "");
    let unsigned = reqwest::Client::new()
        .post(format!("{}/slack/commands", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let stale = signed(&app, "/slack/commands", body.clone(), 301).await;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    assert!(stale.text().await.expect("body").contains("five minutes"));
    let forged = reqwest::Client::new()
        .post(format!("{}/slack/commands", app.base))
        .header("x-slack-request-timestamp", now_seconds().to_string())
        .header("x-slack-signature", portolan_model::slack::signature("not the secret", "1", body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert!(slack.calls("users.info").is_empty(), "nothing was read for a refused request");

    // Ana's address is confirmed by Slack and hers here: linked, and she sees only what she may read.
    let (status, found) = command(&app, "U0ANA", "search cart", "").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["response_type"], "ephemeral");
    assert!(all_text(&found).contains("/catalog/service/cart|cart"), "{found}");
    let (_, hidden) = command(&app, "U0ANA", "vault", "").await;
    assert!(all_text(&hidden).contains("Nothing you may read matches"), "vault is team-b's: {hidden}");
    let ana_token = app.member("ana", &["team-a"]).await;
    let mine = app.call_as(Method::GET, "/api/v1/slack", &ana_token, None).await;
    assert_eq!(mine.body["links"][0]["slackUser"], "U0ANA", "{}", mine.body);
    assert_eq!(mine.body["links"][0]["method"], "email");

    // Cy's Slack address is not confirmed: a one-time link, opened signed in, links them.
    let user = json!({"identifier": "cy@example.com", "teams": ["team-b"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);
    let (_, prompt) = command(&app, "U0CY", "search vault", "").await;
    let prompt = all_text(&prompt);
    let start = prompt.find("/slack/link?code=").expect("a one-time link");
    let code: String = prompt[start + "/slack/link?code=".len()..].chars().take_while(|c| *c != '|').collect();
    let session = sign_in(&app, "cy@example.com").await;
    let (status, html) = page(&app, &format!("/slack/link?code={code}"), &session).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("U0CY") && html.contains(TEAM), "the page names the Slack user");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("csrf");
    let linked = form_post(
        browser().post(format!("{}/slack/link", app.base)).header("cookie", &session),
        &[("csrf", csrf), ("code", &code)],
    )
    .send()
    .await
    .expect("linked");
    assert_eq!(linked.status(), StatusCode::SEE_OTHER);
    let again = form_post(
        browser().post(format!("{}/slack/link", app.base)).header("cookie", &session),
        &[("csrf", csrf), ("code", &code)],
    )
    .send()
    .await
    .expect("sent");
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY, "a link works once");
    let (_, found) = command(&app, "U0CY", "search vault", "").await;
    assert!(all_text(&found).contains("/catalog/service/vault|vault"), "{found}");
    let (status, expired) = page(&app, "/slack/link?code=forged", &session).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{expired}");
    assert!(expired.contains("not valid or has expired"), "{expired}");

    // The link is in the audit log, by Slack.
    let audit = app.get("/api/v1/audit-log?action=slack.link").await;
    let origins: Vec<&str> =
        audit.body["records"].as_array().into_iter().flatten().filter_map(|r| r["origin"].as_str()).collect();
    assert_eq!(origins.len(), 2, "{}", audit.body);
    assert!(origins.contains(&"slack") && origins.contains(&"ui"), "{origins:?}");
}

/// `run` opens the action's form as a modal (its entity picker, inputs and guardrails); a value
/// out of bounds is shown beside its input; a run needing approval tells its linked approver
/// in Slack with buttons, whose decision (with a comment) moves the run on; the requester's
/// thread follows the run to its end.
#[tokio::test]
async fn an_action_runs_from_a_slack_modal_and_is_approved_from_slack() {
    let slack = FakeSlack::start(&[("U0ANA", "ana@example.com", true), ("U0ADM", "admin@test", true)]).await;
    let app = slack_app(&slack).await;
    // The approver's Slack user is linked (by their address) when they first use the app.
    let (_, found) = command(&app, "U0ADM", "search cart", "").await;
    assert!(all_text(&found).contains("cart"), "{found}");

    let trigger = slack.trigger("13345224609.738474920.8088930838d88f008e0");
    let (status, answer) = command(&app, "U0ANA", "run scale", &trigger).await;
    assert_eq!((status, &answer), (StatusCode::OK, &Value::Null), "a modal opens: Slack wants an empty 200");
    let opened = slack.calls("views.open").pop().expect("views.open");
    let view = &opened["view"];
    assert_eq!((view["title"]["text"].as_str(), view["callback_id"].as_str()), (Some("Scale"), Some("run")));
    let blocks = view["blocks"].as_array().expect("blocks");
    let entity = blocks.iter().find(|b| b["block_id"] == "entity").expect("an entity picker");
    let choices: Vec<&str> =
        entity["element"]["options"].as_array().expect("options").iter().filter_map(|o| o["value"].as_str()).collect();
    assert_eq!(choices, ["cart"], "only what ana may read");
    let replicas = blocks.iter().find(|b| b["block_id"] == "in.replicas").expect("the replicas input");
    assert_eq!(replicas["element"]["type"], "number_input");
    assert_eq!(replicas["element"]["max_value"], "10");
    assert_eq!(replicas["optional"], false);
    assert!(view.to_string().contains("Needs approval from admin@test"), "guardrails in words: {view}");
    // A trigger is good once, for three seconds: Slack refuses it again, and the person is told.
    let (_, again) = command(&app, "U0ANA", "run scale", &trigger).await;
    assert!(all_text(&again).contains("invalid_trigger_id"), "{again}");

    let submit = |replicas: &str| {
        json!({"type": "view_submission", "team": {"id": TEAM, "domain": "portolan"},
            "user": {"id": "U0ANA", "team_id": TEAM}, "trigger_id": "1.2.3",
            "view": {"id": "V0123", "type": "modal", "callback_id": "run", "blocks": view["blocks"],
                "private_metadata": view["private_metadata"],
                "state": {"values": {
                    "entity": {"entity": {"type": "static_select", "selected_option": {"value": "cart", "text": {"type": "plain_text", "text": "cart"}}}},
                    "in.replicas": {"in.replicas": {"type": "number_input", "value": replicas}}}}}})
    };
    let (status, refused) = interact(&app, submit("40")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refused["response_action"], "errors", "{refused}");
    assert!(refused["errors"]["in.replicas"].as_str().is_some_and(|m| m.contains("10")), "{refused}");
    let (_, accepted) = interact(&app, submit("4")).await;
    assert_eq!(accepted, json!({"response_action": "clear"}));

    // The run waits; ana's direct messages get its message, the approver a request with buttons.
    let parent = slack.wait_for("chat.postMessage", |c| c["channel"] == "U0ANA" && c["thread_ts"].is_null()).await;
    assert!(parent["text"].as_str().is_some_and(|t| t.contains("Scale on cart: waiting for approval")), "{parent}");
    let runs = app.get("/api/v1/actions/runs?action=scale").await;
    let run = runs.body["runs"][0].clone();
    let id = run["id"].as_str().expect("id").to_string();
    assert_eq!((run["trigger"]["by"].as_str(), run["trigger"]["origin"].as_str()), (Some("ana"), Some("slack")));
    let request = slack.wait_for("chat.postMessage", |c| c["channel"] == "U0ADM").await;
    let buttons = request["blocks"][1]["elements"].as_array().expect("buttons");
    assert_eq!(
        (buttons[0]["action_id"].as_str(), buttons[0]["value"].as_str()),
        (Some("approval.approve"), Some(id.as_str()))
    );

    // Approve, with a comment, from the request.
    let ts = slack.first_ts("D0ADM");
    let click = json!({"type": "block_actions", "team": {"id": TEAM}, "user": {"id": "U0ADM", "team_id": TEAM},
        "trigger_id": slack.trigger("2.3.4"),
        "container": {"type": "message", "channel_id": "D0ADM", "message_ts": ts},
        "actions": [{"type": "button", "action_id": "approval.approve", "block_id": "approval", "value": id}]});
    let (status, answer) = interact(&app, click).await;
    assert_eq!((status, answer), (StatusCode::OK, Value::Null));
    let modal = slack.calls("views.open").pop().expect("the approval modal")["view"].clone();
    assert_eq!(modal["callback_id"], "approval");
    let decide = json!({"type": "view_submission", "team": {"id": TEAM}, "user": {"id": "U0ADM", "team_id": TEAM},
        "view": {"callback_id": "approval", "blocks": modal["blocks"], "private_metadata": modal["private_metadata"],
            "state": {"values": {"comment": {"comment": {"type": "plain_text_input", "value": "looks fine"}}}}}});
    let (_, decided) = interact(&app, decide.clone()).await;
    assert_eq!(decided, json!({"response_action": "clear"}));
    let ended = run_until(&app, &id, Duration::from_secs(15), crate::ended).await;
    assert_eq!(ended["run"]["status"], "SUCCESS", "{ended}");
    assert_eq!(ended["run"]["approval"]["decisions"][0]["comment"], "looks fine", "{ended}");
    let updated = slack.wait_for("chat.update", |c| c["channel"] == "D0ADM").await;
    assert!(updated.to_string().contains("Approved by admin@test"), "the buttons give way: {updated}");
    // Deciding again is refused beside the comment.
    let (_, twice) = interact(&app, decide).await;
    assert!(twice["errors"]["comment"].as_str().is_some_and(|m| m.contains("no longer waiting")), "{twice}");

    // The requester's thread follows the run.
    let done =
        slack.wait_for("chat.postMessage", |c| c["thread_ts"].is_string() && c.to_string().contains("succeeded")).await;
    assert_eq!(done["channel"], "D0ANA");
    slack
        .wait_for("chat.update", |c| {
            c["channel"] == "D0ANA" && c["text"].as_str().is_some_and(|t| t.ends_with("succeeded"))
        })
        .await;

    // Every request to Slack carried the bot token, and none was refused for its shape.
    let refused: Vec<_> = slack.calls("views.open").into_iter().filter(|c| check_view(&c["view"]).is_err()).collect();
    assert!(refused.is_empty(), "{refused:#?}");
}
