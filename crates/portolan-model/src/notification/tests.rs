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
