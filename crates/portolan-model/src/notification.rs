//! Notifications: what a person is told when a run of theirs moves on — it waits for approval
//! no longer (approved or declined), it succeeded, it failed — and where: the portal's inbox
//! for the topics they keep there (all but successes, unless they choose), and a webhook of theirs (JSON, or a Slack incoming webhook) for the
//! topics they choose. No IO.

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;
use crate::guardrail::{Notify, NotifyFormat};
use crate::run::{Run, RunStatus};

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Topic {
    #[serde(rename = "run.succeeded")]
    RunSucceeded,
    #[serde(rename = "run.failed")]
    RunFailed,
    #[serde(rename = "run.approved")]
    RunApproved,
    #[serde(rename = "run.declined")]
    RunDeclined,
    #[serde(rename = "approval.needed")]
    ApprovalNeeded,
}

impl Topic {
    pub const ALL: [Topic; 5] =
        [Topic::RunSucceeded, Topic::RunFailed, Topic::RunApproved, Topic::RunDeclined, Topic::ApprovalNeeded];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::RunSucceeded => "run.succeeded",
            Topic::RunFailed => "run.failed",
            Topic::RunApproved => "run.approved",
            Topic::RunDeclined => "run.declined",
            Topic::ApprovalNeeded => "approval.needed",
        }
    }

    pub fn parse(text: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// How the preferences page names it.
    pub fn label(self) -> &'static str {
        match self {
            Topic::RunSucceeded => "A run of mine succeeded",
            Topic::RunFailed => "A run of mine failed or timed out",
            Topic::RunApproved => "A run of mine was approved",
            Topic::RunDeclined => "A run of mine was declined",
            Topic::ApprovalNeeded => "A run waits for my approval",
        }
    }
}

/// A person's choices: the topics their inbox gets (by default every one but a run's success,
/// which they saw happen), the topics sent to them in Slack once they link their Slack user
/// (the same by default), the topics e-mailed to them (none unless chosen), and a webhook with
/// the topics it gets (all, when it names none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preferences {
    #[serde(default = "default_inbox")]
    pub inbox: Vec<Topic>,
    #[serde(default = "default_inbox")]
    pub slack: Vec<Topic>,
    #[serde(default)]
    pub email: Vec<Topic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Notify>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_topics: Vec<Topic>,
}

fn default_inbox() -> Vec<Topic> {
    Topic::ALL.into_iter().filter(|t| *t != Topic::RunSucceeded).collect()
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            inbox: default_inbox(),
            slack: default_inbox(),
            email: Vec::new(),
            webhook: None,
            webhook_topics: Vec::new(),
        }
    }
}

impl Preferences {
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Some(webhook) = &self.webhook {
            webhook.check("/webhook", &mut errors);
        }
        if !self.webhook_topics.is_empty() && self.webhook.is_none() {
            errors.push("/webhookTopics", "topics for a webhook: set `webhook` too");
        }
        errors.into_result(())
    }

    pub fn to_inbox(&self, topic: Topic) -> bool {
        self.inbox.contains(&topic)
    }

    /// Whether a topic goes to Slack, for someone whose Slack user is linked.
    pub fn to_slack(&self, topic: Topic) -> bool {
        self.slack.contains(&topic)
    }

    pub fn to_email(&self, topic: Topic) -> bool {
        self.email.contains(&topic)
    }

    pub fn to_webhook(&self, topic: Topic) -> bool {
        self.webhook.is_some() && (self.webhook_topics.is_empty() || self.webhook_topics.contains(&topic))
    }
}

/// Where a notification is sent beyond the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Webhook,
    Slack,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Slack => "slack",
            Channel::Email => "email",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        [Channel::Webhook, Channel::Slack, Channel::Email].into_iter().find(|c| c.as_str() == text)
    }
}

/// A notification's delivery record with one channel's outcome put in or replaced, each channel
/// as `name: outcome`, joined by ` · ` (`webhook: delivered · slack: queued`).
pub fn delivery_with(previous: Option<&str>, channel: Channel, outcome: &str) -> String {
    let prefix = format!("{}: ", channel.as_str());
    let mut parts: Vec<String> = previous
        .into_iter()
        .flat_map(|p| p.split(" · "))
        .filter(|part| !part.is_empty() && !part.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    parts.push(format!("{prefix}{outcome}"));
    parts.sort();
    parts.join(" · ")
}

/// What to tell whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub topic: Topic,
    pub recipient: String,
    pub title: String,
    pub link: String,
}

/// What a run's change tells the person who asked for it, if anything. A run's start is not
/// news to them (they just asked), and an automation's runs have nobody to tell.
pub fn for_run(before: Option<&Run>, run: &Run) -> Option<Notice> {
    let before = before?;
    if before.status == run.status || run.trigger.by.starts_with("automation:") || run.depth > 0 {
        return None;
    }
    let what = described(run);
    let reason = run.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    let (topic, title) = match run.status {
        RunStatus::Success => (Topic::RunSucceeded, format!("{what} succeeded")),
        RunStatus::Failure => (Topic::RunFailed, format!("{what} failed{reason}")),
        RunStatus::TimedOut => (Topic::RunFailed, format!("{what} timed out{reason}")),
        RunStatus::Declined => (Topic::RunDeclined, format!("{what} was declined{reason}")),
        RunStatus::Queued | RunStatus::InProgress if before.status == RunStatus::WaitingForApproval => {
            (Topic::RunApproved, format!("{what} was approved and goes ahead"))
        }
        _ => return None,
    };
    Some(Notice { topic, recipient: run.trigger.by.clone(), title, link: format!("/runs/{}", run.id) })
}

/// What an approver is told of a run that waits for them (the requester never approves their own).
pub fn approval_needed(run: &Run, approver: &str) -> Option<Notice> {
    (run.status == RunStatus::WaitingForApproval && approver != run.trigger.by).then(|| Notice {
        topic: Topic::ApprovalNeeded,
        recipient: approver.to_string(),
        title: format!("{} by {} waits for your approval", described(run), run.trigger.by),
        link: format!("/runs/{}", run.id),
    })
}

/// A run as a notice names it: its action's title, and the entity it acts on.
fn described(run: &Run) -> String {
    match (&run.action_title, &run.entity) {
        (Some(title), Some(entity)) => format!("{title} on {entity}"),
        (Some(title), None) => title.clone(),
        (None, Some(entity)) => format!("{} on {entity}", run.action),
        (None, None) => run.action.clone(),
    }
}

/// A notice as its webhook receives it: JSON (`notification`), or a Slack message.
pub fn webhook_body(format: NotifyFormat, topic: Topic, title: &str, url: &str, id: &str) -> serde_json::Value {
    match format {
        NotifyFormat::Json => {
            serde_json::json!({"type": "notification", "id": id, "topic": topic, "title": title, "url": url})
        }
        NotifyFormat::Slack => {
            let title = crate::slack::escape(title);
            serde_json::json!({"text": format!("{title} — <{url}|open in Portolan>")})
        }
    }
}

#[cfg(test)]
mod tests;
