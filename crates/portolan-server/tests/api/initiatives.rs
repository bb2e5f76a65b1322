//! Initiatives: progress over a scripted history, what a member may see, reminders through a
//! webhook and a Slack webhook, promotion into a scorecard, the demo's, the pages, and bad input.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::approvals::receiver;
use crate::web::{PASSWORD, page, sign_in};
use crate::{ManualClock, TestApp, service};

const DAY: i64 = 86_400_000;
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600_000;

/// Services a1, a2 (team-a) and b1, b2 (team-b) with 1, 3, 1 and 0 replicas; a scorecard whose
/// Silver needs two replicas and Gold five; and an action that scales a service.
async fn fleet(app: &TestApp) {
    app.with_service_blueprints().await;
    for team in ["team-a", "team-b"] {
        app.post("/api/v1/blueprints/_team/entities", json!({"identifier": team})).await;
    }
    for (id, team, replicas) in [("a1", "team-a", 1), ("a2", "team-a", 3), ("b1", "team-b", 1), ("b2", "team-b", 0)] {
        let mut doc = service(id);
        doc["team"] = json!([team]);
        doc["properties"]["replicas"] = json!(replicas);
        assert_eq!(app.post("/api/v1/blueprints/service/entities", doc).await.status, StatusCode::CREATED);
    }
    let rule = |id: &str, level: &str, min: u32| {
        json!({"identifier": id, "title": format!("At least {min} replicas"), "level": level,
               "query": {"combinator": "and", "rules": [{"property": "replicas", "operator": ">=", "value": min}]}})
    };
    let scorecard = json!({"identifier": "replicated", "rules": [rule("two", "Silver", 2), rule("five", "Gold", 5)]});
    let made = app.post("/api/v1/blueprints/service/scorecards", scorecard).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let action = json!({
        "identifier": "scale",
        "trigger": {"type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service",
            "userInputs": {"properties": {"replicas": {"type": "number"}}, "required": ["replicas"]}},
        "invocationMethod": {"type": "UPSERT_ENTITY", "blueprintIdentifier": "service", "mapping": {
            "identifier": "{{ .entity.identifier }}", "properties": {"replicas": "{{ .inputs.replicas }}"}}}
    });
    let made = app.post("/api/v1/actions", action).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
}

/// Every service at Silver within ten days of START.
fn silver(extra: Value) -> Value {
    let mut document = json!({
        "identifier": "silver", "title": "Two replicas everywhere", "blueprint": "service",
        "goal": {"scorecard": "replicated", "level": "Silver"}, "owner": "team-platform",
        "startsAt": "2026-01-01T00:00:00Z", "targetDate": "2026-01-11T00:00:00Z", "fixes": {"two": "scale"}
    });
    for (key, value) in extra.as_object().expect("object") {
        document[key] = value.clone();
    }
    document
}

async fn replicas(app: &TestApp, id: &str, n: u32) {
    let patched =
        app.patch(&format!("/api/v1/blueprints/service/entities/{id}"), json!({"properties": {"replicas": n}})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
}

fn burnup(report: &Value) -> Vec<(u64, u64)> {
    report["burnup"]
        .as_array()
        .expect("burnup")
        .iter()
        .map(|d| (d["done"].as_u64().unwrap_or(99), d["total"].as_u64().unwrap_or(99)))
        .collect()
}

#[tokio::test]
async fn progress_per_team_and_the_burn_up_follow_a_scripted_history() {
    let clock = ManualClock::at(START + 9 * 3_600_000);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    fleet(&app).await;
    let created = app.post("/api/v1/initiatives", silver(json!({}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["initiative"]["createdBy"], "admin@test", "{}", created.body);

    // Day 0: only a2 has two replicas. Day 1: a1 scaled. Day 2: b1 scaled.
    app.state.initiatives.sample_progress().await.expect("day 0");
    clock.advance(DAY);
    replicas(&app, "a1", 2).await;
    app.state.initiatives.sample_progress().await.expect("day 1");
    clock.advance(DAY);
    replicas(&app, "b1", 2).await;
    app.state.initiatives.sample_progress().await.expect("day 2");

    let reply = app.get("/api/v1/initiatives/silver").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let report = &reply.body;
    assert_eq!(burnup(report), vec![(1, 4), (2, 4), (3, 4)]);
    assert_eq!(report["progress"]["done"], 3);
    assert_eq!(report["progress"]["total"], 4);
    assert_eq!(report["progress"]["teams"]["team-a"], json!({"done": 2, "total": 2}));
    assert_eq!(report["progress"]["teams"]["team-b"], json!({"done": 1, "total": 2}));
    // Two days of ten from 1 done towards 4: a steady pace has 1 + 3 × 0.2 (and nine hours) done.
    assert_eq!(report["pace"]["standing"], "onTrack", "{}", report["pace"]);
    let expected = report["pace"]["expectedNow"].as_f64().expect("expected");
    assert!((expected - (1.0 + 3.0 * (2.0 * 24.0 + 9.0) / 240.0)).abs() < 1e-6, "{expected}");
    assert!(report["pace"]["projectedDone"].is_string(), "two gained in two days: a date for the last");
    // What is not done comes first, with the rule it fails and the action that fixes it.
    let first = &report["entities"][0];
    assert_eq!(first["identifier"], "b2");
    assert_eq!(first["done"], false);
    assert_eq!(first["failing"], json!([{"rule": "two", "title": "At least 2 replicas", "action": "scale"}]));
    assert_eq!(report["entities"].as_array().map(Vec::len), Some(4));

    let team_b = app.get("/api/v1/initiatives/silver?team=team-b").await;
    assert_eq!(burnup(&team_b.body), vec![(0, 2), (0, 2), (1, 2)], "{}", team_b.body);
    assert_eq!(team_b.body["entities"].as_array().map(Vec::len), Some(2));

    let list = app.get("/api/v1/initiatives").await;
    assert_eq!(list.body["initiatives"][0]["progress"]["done"], 3, "{}", list.body);

    // Once every entity is there it is done, whatever the date.
    replicas(&app, "b2", 2).await;
    clock.advance(30 * DAY);
    let done = app.get("/api/v1/initiatives/silver").await;
    assert_eq!(done.body["pace"]["standing"], "done", "{}", done.body["pace"]);
}

#[tokio::test]
async fn a_member_sees_only_the_entities_they_may_read_and_may_not_change_initiatives() {
    let app = TestApp::builder().clock(ManualClock::at(START + DAY)).start().await;
    fleet(&app).await;
    let hook = "https://hooks.slack.example/services/T0/B0/secret";
    let reminders = json!({"reminders": {"notify": {"url": hook, "format": "slack"}}});
    assert_eq!(app.post("/api/v1/initiatives", silver(reminders)).await.status, StatusCode::CREATED);
    app.state.initiatives.sample_progress().await.expect("sample");
    let grants = json!({"read": {"ownedByTeam": true}});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", grants).await.status, StatusCode::OK);
    let ana = app.member("ana", &["team-a"]).await;

    let mine = app.call_as(Method::GET, "/api/v1/initiatives/silver", &ana, None).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    let seen: Vec<&str> =
        mine.body["entities"].as_array().expect("entities").iter().filter_map(|e| e["identifier"].as_str()).collect();
    assert_eq!(seen, vec!["a1", "a2"], "b1 and b2 are team-b's");
    assert_eq!(mine.body["progress"]["total"], 2);
    assert_eq!(mine.body["burnup"], json!([]), "every team's burn-up counts what ana may not read");
    assert!(mine.body["burnupWithheld"].as_str().is_some_and(|w| w.contains("one of your teams")), "{}", mine.body);
    assert!(!mine.body.to_string().contains(hook), "a reminder's URL is a secret: {}", mine.body);
    let listed = app.call_as(Method::GET, "/api/v1/initiatives", &ana, None).await;
    assert!(!listed.body.to_string().contains(hook), "{}", listed.body);
    assert!(app.get("/api/v1/initiatives/silver").await.body.to_string().contains(hook), "an admin sees it");
    let own = app.call_as(Method::GET, "/api/v1/initiatives/silver?team=team-a", &ana, None).await;
    assert_eq!(burnup(&own.body), vec![(1, 2)], "{}", own.body);

    let refused =
        app.call_as(Method::POST, "/api/v1/initiatives", &ana, Some(silver(json!({"identifier": "mine"})))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let refused = app.call_as(Method::DELETE, "/api/v1/initiatives/silver", &ana, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = app.call_as(Method::POST, "/api/v1/initiatives/silver/remind", &ana, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn mistakes_are_refused_with_their_paths() {
    let app = TestApp::builder().clock(ManualClock::at(START)).start().await;
    fleet(&app).await;
    let cases = [
        (json!({"goal": {"scorecard": "nope", "level": "Gold"}}), "/goal/scorecard"),
        (json!({"goal": {"scorecard": "replicated", "level": "Platinum"}}), "/goal/level"),
        (
            json!({"goal": {"scorecard": "replicated", "level": "Silver", "rules": []}, "fixes": {"two": "no-such-action"}}),
            "/fixes/two",
        ),
        (json!({"targetDate": "2025-01-01T00:00:00Z"}), "/targetDate"),
        (
            json!({"filter": {"combinator": "and", "rules": [{"property": "ghost", "operator": "isEmpty"}]}}),
            "/filter/rules/0/property",
        ),
        (json!({"reminders": {"notify": {"url": "mailto:x@example.com"}}}), "/reminders/notify/url"),
        (json!({"blueprint": "ghost"}), "/blueprint"),
        (json!({"startsAt": "last tuesday"}), "/startsAt"),
    ];
    for (change, path) in cases {
        let refused = app.post("/api/v1/initiatives", silver(change.clone())).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{change}: {}", refused.body);
        assert!(refused.detail_paths().contains(&path.to_string()), "{change}: {}", refused.body);
    }
    assert_eq!(app.post("/api/v1/initiatives", silver(json!({}))).await.status, StatusCode::CREATED);
    assert_eq!(app.post("/api/v1/initiatives", silver(json!({}))).await.status, StatusCode::CONFLICT);
    assert_eq!(app.get("/api/v1/initiatives/nothing").await.status, StatusCode::NOT_FOUND);
    let renamed = app.put("/api/v1/initiatives/silver", silver(json!({"identifier": "gold"}))).await;
    assert!(renamed.detail_paths().contains(&"/identifier".to_string()), "{}", renamed.body);
    let no_reminders = app.post("/api/v1/initiatives/silver/remind", json!({})).await;
    assert_eq!(no_reminders.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", no_reminders.body);
    let updated = app.put("/api/v1/initiatives/silver", silver(json!({"title": "Renamed"}))).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["initiative"]["definition"]["title"], "Renamed");
    assert_eq!(app.delete("/api/v1/initiatives/silver").await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/initiatives/silver").await.status, StatusCode::NOT_FOUND);
    let audit = app.get("/api/v1/audit-log?resourceType=initiative").await;
    let actions: Vec<&str> =
        audit.body["records"].as_array().expect("records").iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"initiative.create") && actions.contains(&"initiative.delete"), "{}", audit.body);
}

#[tokio::test]
async fn owners_are_reminded_of_what_is_left_and_a_failed_reminder_is_kept() {
    let clock = ManualClock::at(START + DAY);
    let app = TestApp::builder().clock(clock.clone()).start().await;
    fleet(&app).await;
    let (url, got) = receiver().await;
    let reminders = json!({"reminders": {"everyDays": 7, "notify": {"url": url, "format": "slack"}}});
    assert_eq!(app.post("/api/v1/initiatives", silver(reminders)).await.status, StatusCode::CREATED);

    assert_eq!(app.state.initiatives.remind_due().await.expect("due"), 1);
    let text = got.lock().expect("lock")[0]["text"].as_str().unwrap_or_default().to_string();
    assert!(text.starts_with("*Two replicas everywhere* (team-platform): 1 of 4 done, due 2026-01-11."), "{text}");
    assert!(text.contains("• team-b: 2 left"), "{text}");
    assert!(text.contains("a1 lacks At least 2 replicas"), "{text}");
    assert!(text.contains("/initiatives/silver"), "{text}");
    assert_eq!(app.state.initiatives.remind_due().await.expect("not due"), 0, "a week has not passed");
    clock.advance(7 * DAY);
    assert_eq!(app.state.initiatives.remind_due().await.expect("due again"), 1);
    assert_eq!(got.lock().expect("lock").len(), 2);

    // As JSON, on demand.
    let json_hook = json!({"reminders": {"notify": {"url": url, "format": "json"}}});
    assert_eq!(app.put("/api/v1/initiatives/silver", silver(json_hook)).await.status, StatusCode::OK);
    let sent = app.post("/api/v1/initiatives/silver/remind", json!({})).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let body = got.lock().expect("lock")[2].clone();
    assert_eq!(body["type"], "initiative.reminder");
    assert_eq!((body["done"].as_u64(), body["total"].as_u64()), (Some(1), Some(4)));
    let team_b = body["teams"].as_array().expect("teams").iter().find(|t| t["team"] == "team-b").cloned();
    assert_eq!(team_b.expect("team-b")["entities"][0]["failing"][0]["action"], "scale");

    // A receiver that is not there: the failure is answered and kept, and tried again an hour on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", listener.local_addr().expect("address"))
    };
    let gone = json!({"reminders": {"notify": {"url": closed}}});
    assert_eq!(app.put("/api/v1/initiatives/silver", silver(gone)).await.status, StatusCode::OK);
    let failed = app.post("/api/v1/initiatives/silver/remind", json!({})).await;
    assert_eq!(failed.status, StatusCode::OK);
    assert!(failed.body["reminder"]["error"].as_str().is_some_and(|e| e.contains("not delivered")), "{}", failed.body);
    let kept = app.get("/api/v1/initiatives/silver").await;
    assert!(kept.body["initiative"]["lastReminder"]["error"].is_string(), "{}", kept.body);
    let error = kept.body["initiative"]["lastReminder"]["error"].to_string();
    assert!(!error.contains(&closed), "the URL (a Slack webhook's secret) is not in the error: {error}");
    assert_eq!(app.state.initiatives.remind_due().await.expect("too soon"), 0);
    clock.advance(3_600_000);
    assert_eq!(app.state.initiatives.remind_due().await.expect("retried"), 1);
}

#[tokio::test]
async fn a_done_goal_of_rules_is_promoted_into_the_scorecard() {
    let app = TestApp::builder().clock(ManualClock::at(START + DAY)).start().await;
    fleet(&app).await;
    let goal = json!({"rules": [{"identifier": "has-repository", "title": "Has a repository",
        "query": {"combinator": "and", "rules": [{"property": "repository", "operator": "isNotEmpty"}]}}]});
    let made = app.post("/api/v1/initiatives", silver(json!({"identifier": "repos", "goal": goal, "fixes": {}}))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let promote = json!({"scorecard": "replicated", "level": "Bronze"});
    let early = app.post("/api/v1/initiatives/repos/promote", promote.clone()).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.body);
    assert!(early.body["message"].as_str().is_some_and(|m| m.contains("4 of 4")), "{}", early.body);
    for id in ["a1", "a2", "b1", "b2"] {
        let repo = json!({"properties": {"repository": format!("https://git.example.com/{id}")}});
        assert_eq!(app.patch(&format!("/api/v1/blueprints/service/entities/{id}"), repo).await.status, StatusCode::OK);
    }
    let promoted = app.post("/api/v1/initiatives/repos/promote", promote.clone()).await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
    assert_eq!(promoted.body["initiative"]["promoted"]["level"], "Bronze");
    let scorecard = app.get("/api/v1/blueprints/service/scorecards/replicated").await;
    let rules = scorecard.body["scorecard"]["rules"].as_array().expect("rules").clone();
    assert!(rules.iter().any(|r| r["identifier"] == "has-repository" && r["level"] == "Bronze"), "{rules:?}");
    let entity = app.get("/api/v1/blueprints/service/entities/a1").await;
    let scored = entity.body["entity"]["scorecards"]["replicated"]["rules"].to_string();
    assert!(scored.contains("has-repository"), "the entities are scored on it: {scored}");
    assert_eq!(app.post("/api/v1/initiatives/repos/promote", promote).await.status, StatusCode::CONFLICT);
    let level_goal = app.post("/api/v1/initiatives", silver(json!({}))).await;
    assert_eq!(level_goal.status, StatusCode::CREATED);
    replicas(&app, "a1", 2).await;
    replicas(&app, "b1", 2).await;
    replicas(&app, "b2", 2).await;
    let refused =
        app.post("/api/v1/initiatives/silver/promote", json!({"scorecard": "replicated", "level": "Gold"})).await;
    assert!(refused.detail_paths().contains(&"/goal".to_string()), "already a level: {}", refused.body);
}

#[tokio::test]
async fn the_demo_s_initiative_is_half_way_with_a_burn_up_and_the_pages_show_it() {
    let app = crate::spawn_app().await;
    portolan_server::demo::load(&app.state).await.expect("demo");
    let reply = app.get("/api/v1/initiatives/gold-readiness").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let report = &reply.body;
    let done = report["progress"]["done"].as_u64().expect("done");
    let total = report["progress"]["total"].as_u64().expect("total");
    assert!(done >= 1 && done < total, "half-way: {}", report["progress"]);
    let days = burnup(report);
    assert_eq!(days.len(), 60, "60 days since it started");
    assert_eq!((days[0], days[59]), ((0, 2), (1, 2)), "Cart reached Gold on the way");
    let products =
        report["entities"].as_array().expect("entities").iter().find(|e| e["identifier"] == "products-service");
    let failing = &products.expect("products")["failing"];
    assert_eq!(failing[0]["action"], "update_pod_count", "{failing}");

    let user = json!({"identifier": "ana@example.com", "teams": ["team-products"], "password": PASSWORD});
    assert_eq!(app.post("/api/v1/users", user).await.status, StatusCode::CREATED);
    let session = sign_in(&app, "ana@example.com").await;
    let (status, list) = page(&app, "/initiatives", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains(r#"<a href="/initiatives/gold-readiness">Gold readiness for every production service</a>"#),
        "{list}"
    );
    let (status, html) = page(&app, "/initiatives/gold-readiness", &session).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(r#"<svg class="chart""#), "a burn-up: {html}");
    assert!(
        html.contains(
            "Runs at least five replicas — <a href=\"/actions/update_pod_count?entity=products-service\">fix it</a>"
        ),
        "{html}"
    );
    let (_, team) = page(&app, "/initiatives/gold-readiness?team=team-cart", &session).await;
    assert!(team.contains("of team-cart"), "{team}");
    assert!(!team.contains("products-service"), "{team}");
}

fn titles(reply: &Value, topic: &str) -> Vec<String> {
    let notes = reply["notifications"].as_array().into_iter().flatten();
    notes.filter(|n| n["topic"] == topic).filter_map(|n| n["title"].as_str()).map(str::to_string).collect()
}

/// A scorecard level that drops tells the members of the entity's team who may read it; an
/// initiative's reminder tells each team's members how much they have left, even with no
/// webhook of its own.
#[tokio::test]
async fn a_dropped_level_and_an_initiative_reminder_reach_the_owning_teams_members() {
    let app = TestApp::builder().clock(ManualClock::at(START + DAY)).start().await;
    fleet(&app).await;
    let grants = json!({"read": {"ownedByTeam": true}});
    assert_eq!(app.put("/api/v1/blueprints/service/permissions", grants).await.status, StatusCode::OK);
    let ana = app.member("ana", &["team-a"]).await;
    let bo = app.member("bo", &["team-b"]).await;
    // Team A's channel hears what concerns the team; only its members and admins choose that.
    let channel = crate::actions::Receiver::start(vec![crate::actions::Answer(200, 0, vec![])]).await;
    let team_a = "/api/v1/teams/team-a/notification-preferences";
    let chosen = json!({"webhook": {"url": channel.url}, "topics": ["scorecard.dropped", "initiative.reminder"]});
    let refused = app.call_as(Method::PUT, team_a, &bo, Some(chosen.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let wrong = app.call_as(Method::PUT, team_a, &ana, Some(json!({"topics": ["run.failed"]}))).await;
    assert_eq!(wrong.detail_paths(), ["/topics/0"], "{}", wrong.body);
    let missing = app.call_as(Method::GET, "/api/v1/teams/team-z/notification-preferences", &ana, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let saved = app.call_as(Method::PUT, team_a, &ana, Some(chosen)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);

    replicas(&app, "a2", 1).await;
    replicas(&app, "b1", 2).await;
    app.drain_jobs().await;
    let told = app.call_as(Method::GET, "/api/v1/notifications", &ana, None).await.body;
    let dropped = titles(&told, "scorecard.dropped");
    assert_eq!(dropped.len(), 1, "{told}");
    assert!(dropped[0].starts_with("a2 (service) dropped from Silver to "), "{dropped:?}");
    assert!(dropped[0].ends_with(" on replicated"), "{dropped:?}");
    let theirs = app.call_as(Method::GET, "/api/v1/notifications", &bo, None).await.body;
    assert!(titles(&theirs, "scorecard.dropped").is_empty(), "b1 went up, and a2 is not team-b's: {theirs}");

    let reminded = json!({"reminders": {"everyDays": 7}});
    assert_eq!(app.post("/api/v1/initiatives", silver(reminded)).await.status, StatusCode::CREATED);
    let sent = app.post("/api/v1/initiatives/silver/remind", json!({})).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let told = app.call_as(Method::GET, "/api/v1/notifications", &ana, None).await.body;
    assert_eq!(
        titles(&told, "initiative.reminder"),
        ["Two replicas everywhere: 2 of team-a's still to do, due 2026-01-11"],
        "a1 and a2 lack Silver: {told}"
    );
    let theirs = app.call_as(Method::GET, "/api/v1/notifications", &bo, None).await.body;
    assert_eq!(
        titles(&theirs, "initiative.reminder"),
        ["Two replicas everywhere: 1 of team-b's still to do, due 2026-01-11"]
    );

    app.drain_jobs().await;
    let heard: Vec<(String, String)> = channel
        .deliveries()
        .iter()
        .map(|d| {
            (d.body["topic"].as_str().unwrap_or_default().into(), d.body["title"].as_str().unwrap_or_default().into())
        })
        .collect();
    assert_eq!(heard.len(), 2, "{heard:?}");
    assert_eq!(heard[0].0, "scorecard.dropped");
    assert!(heard[0].1.starts_with("a2 (service) dropped from Silver"), "{heard:?}");
    let reminder = (
        "initiative.reminder".to_string(),
        "Two replicas everywhere: 2 of team-a's still to do, due 2026-01-11".to_string(),
    );
    assert_eq!(heard[1], reminder);
}
