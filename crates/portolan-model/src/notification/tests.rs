use serde_json::json;

use super::*;

fn run(status: &str, by: &str) -> Run {
    serde_json::from_value(json!({
        "id": "r_1", "action": "scale", "actionTitle": "Scale", "entity": "cart", "status": status,
        "inputs": {}, "backend": "WEBHOOK", "trigger": {"by": by, "origin": "ui", "at": "2026-01-01T00:00:00Z"},
        "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"
    }))
    .expect("a run")
}

#[test]
fn a_requester_hears_of_each_decision_and_end_of_their_run_but_not_its_start() {
    let waiting = run("WAITING_FOR_APPROVAL", "ana");
    assert_eq!(for_run(None, &waiting), None, "they just asked");
    let approved = for_run(Some(&waiting), &run("IN_PROGRESS", "ana")).expect("told");
    assert_eq!((approved.topic, approved.recipient.as_str()), (Topic::RunApproved, "ana"));
    assert_eq!(approved.title, "Scale on cart was approved and goes ahead");
    assert_eq!(approved.link, "/runs/r_1");
    let mut failed = run("FAILURE", "ana");
    failed.reason = Some("exit 2".into());
    let told = for_run(Some(&run("IN_PROGRESS", "ana")), &failed).expect("told");
    assert_eq!((told.topic, told.title.as_str()), (Topic::RunFailed, "Scale on cart failed: exit 2"));
    assert_eq!(
        for_run(Some(&run("IN_PROGRESS", "ana")), &run("TIMED_OUT", "ana")).map(|n| n.topic),
        Some(Topic::RunFailed)
    );
    assert_eq!(for_run(Some(&waiting), &run("DECLINED", "ana")).map(|n| n.topic), Some(Topic::RunDeclined));
    assert_eq!(
        for_run(Some(&run("QUEUED", "ana")), &run("SUCCESS", "ana")).map(|n| n.topic),
        Some(Topic::RunSucceeded)
    );
    assert_eq!(for_run(Some(&run("QUEUED", "ana")), &run("IN_PROGRESS", "ana")), None, "picked up: no news");
    assert_eq!(for_run(Some(&run("SUCCESS", "ana")), &run("SUCCESS", "ana")), None, "no change");
    assert_eq!(for_run(Some(&run("QUEUED", "x")), &run("SUCCESS", "automation:nightly")), None, "nobody to tell");
}

#[test]
fn preferences_choose_the_inboxs_topics_and_the_webhooks() {
    let none = Preferences::default();
    assert!(none.to_inbox(Topic::RunFailed) && !none.to_webhook(Topic::RunFailed));
    assert!(!none.to_inbox(Topic::RunSucceeded), "a success is not news by default");
    let chosen: Preferences = serde_json::from_value(json!({
        "inbox": ["run.failed"], "webhook": {"url": "https://hooks.example/x", "format": "slack"},
        "webhookTopics": ["run.failed"]
    }))
    .expect("preferences");
    assert!(chosen.check().is_ok());
    assert!(!chosen.to_inbox(Topic::RunDeclined) && chosen.to_inbox(Topic::RunFailed));
    assert!(chosen.to_webhook(Topic::RunFailed) && !chosen.to_webhook(Topic::RunApproved));
    let bad: Preferences = serde_json::from_value(json!({"webhook": {"url": "ftp://x"}})).expect("parsed");
    assert_eq!(bad.check().expect_err("refused").0[0].path, "/webhook/url");
    assert!(serde_json::from_value::<Preferences>(json!({"inbox": ["run.exploded"]})).is_err(), "unknown topic");
    assert!(serde_json::from_value::<Preferences>(json!({"mute": []})).is_err(), "unknown field");
}

#[test]
fn slack_gets_the_inboxs_topics_unless_chosen_otherwise() {
    let none = Preferences::default();
    assert!(none.to_slack(Topic::ApprovalNeeded) && !none.to_slack(Topic::RunSucceeded));
    let chosen: Preferences = serde_json::from_value(json!({"slack": ["run.succeeded"]})).expect("preferences");
    assert!(chosen.to_slack(Topic::RunSucceeded) && !chosen.to_slack(Topic::RunFailed));
    assert!(chosen.to_inbox(Topic::RunFailed), "the inbox keeps its default");
    assert!(!none.to_email(Topic::ApprovalNeeded), "e-mail only when chosen");
    let mailed: Preferences = serde_json::from_value(json!({"email": ["approval.needed"]})).expect("preferences");
    assert!(mailed.to_email(Topic::ApprovalNeeded) && !mailed.to_email(Topic::RunFailed));
}

#[test]
fn a_team_chooses_its_channels_and_only_the_topics_that_concern_a_team() {
    let team: TeamPreferences = serde_json::from_value(json!({
        "webhook": {"url": "https://hooks.example/t", "format": "slack"}, "email": "team-a@example.com"
    }))
    .expect("preferences");
    assert!(team.check().is_ok());
    assert!(team.wants(Topic::ScorecardDropped) && !team.wants(Topic::RunFailed), "all team topics by default");
    let channels = team.as_channels();
    assert!(channels.to_webhook(Topic::TtlExpiring) && channels.to_email(Topic::InitiativeReminder));
    assert!(!channels.to_inbox(Topic::TtlExpiring) && !channels.to_slack(Topic::TtlExpiring));
    let narrow: TeamPreferences =
        serde_json::from_value(json!({"webhook": {"url": "https://hooks.example/t"}, "topics": ["approval.needed"]}))
            .expect("preferences");
    assert!(narrow.as_channels().to_webhook(Topic::ApprovalNeeded) && !narrow.wants(Topic::TtlExpiring));
    let bad: TeamPreferences =
        serde_json::from_value(json!({"email": "nobody", "topics": ["run.failed"]})).expect("parsed");
    let paths: Vec<String> = bad.check().expect_err("refused").0.into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["/email", "/topics/0"]);
    assert_eq!(team_recipient("team-a"), "team:team-a");
}

#[test]
fn each_channel_keeps_its_own_delivery_outcome() {
    let queued = delivery_with(None, Channel::Webhook, "queued");
    assert_eq!(queued, "webhook: queued");
    let both = delivery_with(Some(&queued), Channel::Slack, "queued");
    assert_eq!(both, "slack: queued · webhook: queued");
    assert_eq!(delivery_with(Some(&both), Channel::Webhook, "delivered"), "slack: queued · webhook: delivered");
    assert_eq!(Channel::parse("slack"), Some(Channel::Slack));
    assert_eq!(Channel::parse("email"), Some(Channel::Email));
    assert_eq!(Channel::parse("pager"), None);
}

#[test]
fn a_slack_message_escapes_the_title_and_links_the_run() {
    let body =
        webhook_body(NotifyFormat::Slack, Topic::RunFailed, "Deploy <prod> & co failed", "https://p/runs/r_1", "n1");
    assert_eq!(body["text"], "Deploy &lt;prod&gt; &amp; co failed — <https://p/runs/r_1|open in Portolan>");
    let body = webhook_body(NotifyFormat::Json, Topic::RunFailed, "t", "https://p/runs/r_1", "n1");
    assert_eq!(
        body,
        json!({"type": "notification", "id": "n1", "topic": "run.failed", "title": "t", "url": "https://p/runs/r_1"})
    );
}

#[test]
fn an_approver_other_than_the_requester_hears_of_a_run_waiting_for_them() {
    let waiting = run("WAITING_FOR_APPROVAL", "ana");
    let told = approval_needed(&waiting, "carl").expect("told");
    assert_eq!(
        (told.topic, told.title.as_str()),
        (Topic::ApprovalNeeded, "Scale on cart by ana waits for your approval")
    );
    assert_eq!(approval_needed(&waiting, "ana"), None, "not the requester");
    assert_eq!(approval_needed(&run("QUEUED", "ana"), "carl"), None, "nothing waits");
}

fn environment() -> Entity {
    serde_json::from_value(json!({
        "identifier": "dev-ana", "title": "Ana's dev", "blueprint": "environment", "createdBy": "ana",
        "team": [], "properties": {}, "relations": {}, "version": 1,
        "updatedBy": "ana", "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"
    }))
    .expect("an entity")
}

#[test]
fn a_maker_is_told_of_a_timer_ending_with_the_action_that_extends_it() {
    let now = 1_000_000_000;
    let told = ttl_expiring(&environment(), "ttl", now + 23 * 3_600_000 + 100, now, Some("extend_ttl"));
    assert_eq!((told.topic, told.recipient.as_str()), (Topic::TtlExpiring, "ana"));
    assert_eq!(told.title, "Ana's dev (environment) ends in about 23 h (ttl): extend it if it is still needed");
    assert_eq!(told.link, "/actions/extend_ttl?entity=dev-ana");
    let soon = ttl_expiring(&environment(), "ttl", now + 60_000, now, None);
    assert_eq!(soon.title, "Ana's dev (environment) ends in less than an hour (ttl)");
    assert_eq!(soon.link, "/catalog/environment/dev-ana");
}

#[test]
fn only_a_lower_level_is_a_drop() {
    let result = |index: i64, level: &str| json!({"level": level, "levelIndex": index, "rules": []});
    let before: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(json!({"readiness": result(2, "Gold"), "security": result(1, "Silver")})).expect("map");
    let after: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
        json!({"readiness": result(1, "Silver"), "security": result(2, "Gold"), "new": result(0, "Basic")}),
    )
    .expect("map");
    assert_eq!(dropped_levels(&before, &after), [("readiness".to_string(), "Gold".to_string(), "Silver".to_string())]);
    assert!(dropped_levels(&after, &after).is_empty());
    let reminded = initiative_reminder("bo", "tls", "Everyone on TLS 1.3", "team-a", 3, 1_798_675_200_000);
    assert_eq!(reminded.title, "Everyone on TLS 1.3: 3 of team-a's still to do, due 2026-12-31");
    assert_eq!((reminded.topic, reminded.link.as_str()), (Topic::InitiativeReminder, "/initiatives/tls"));
    let told = scorecard_dropped("bo", &environment(), "Readiness", "Gold", "Silver");
    assert_eq!(told.title, "Ana's dev (environment) dropped from Gold to Silver on Readiness");
    assert_eq!((told.recipient.as_str(), told.link.as_str()), ("bo", "/catalog/environment/dev-ana"));
}
