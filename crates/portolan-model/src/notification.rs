//! Notifications: what a person is told when a run of theirs moves on — it waits for approval
//! no longer (approved or declined), it succeeded, it failed —, when a run waits for their
//! approval, when something they made is about to expire, when a scorecard level of their team's
//! drops, and when an initiative reminds their team of what is left; and where: the portal's inbox
//! for the topics they keep there (all but successes, unless they choose), and a webhook of theirs (JSON, or a Slack incoming webhook) for the
//! topics they choose. No IO.

use serde::{Deserialize, Serialize};

use serde_json::{Map, Value};

use crate::error::FieldErrors;
use crate::guardrail::{Notify, NotifyFormat};
use crate::run::{Run, RunStatus};
use crate::{Entity, Millis, ident};

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
    #[serde(rename = "ttl.expiring")]
    TtlExpiring,
    #[serde(rename = "scorecard.dropped")]
    ScorecardDropped,
    #[serde(rename = "initiative.reminder")]
    InitiativeReminder,
}

impl Topic {
    pub const ALL: [Topic; 8] = [
        Topic::RunSucceeded,
        Topic::RunFailed,
        Topic::RunApproved,
        Topic::RunDeclined,
        Topic::ApprovalNeeded,
        Topic::TtlExpiring,
        Topic::ScorecardDropped,
        Topic::InitiativeReminder,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::RunSucceeded => "run.succeeded",
            Topic::RunFailed => "run.failed",
            Topic::RunApproved => "run.approved",
            Topic::RunDeclined => "run.declined",
            Topic::ApprovalNeeded => "approval.needed",
            Topic::TtlExpiring => "ttl.expiring",
            Topic::ScorecardDropped => "scorecard.dropped",
            Topic::InitiativeReminder => "initiative.reminder",
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
            Topic::TtlExpiring => "Something I made expires within a day",
            Topic::ScorecardDropped => "A scorecard level of my team's dropped",
            Topic::InitiativeReminder => "An initiative reminds my team of what is left",
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

/// The topics that concern a team as a whole.
pub const TEAM_TOPICS: [Topic; 4] =
    [Topic::ApprovalNeeded, Topic::TtlExpiring, Topic::ScorecardDropped, Topic::InitiativeReminder];

/// A team's choices: where what concerns it is sent — its webhook (JSON, or a Slack incoming
/// webhook for its channel) and its e-mail address (a list) — and which of [`TEAM_TOPICS`] (all
/// of them unless chosen).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TeamPreferences {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Notify>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<Topic>,
}

impl TeamPreferences {
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Some(webhook) = &self.webhook {
            webhook.check("/webhook", &mut errors);
        }
        if let Some(email) = &self.email
            && (!email.contains('@') || email.contains(char::is_whitespace))
        {
            errors.push("/email", "an e-mail address, such as team-cart@example.com");
        }
        for (i, topic) in self.topics.iter().enumerate() {
            if !TEAM_TOPICS.contains(topic) {
                errors.push(format!("/topics/{i}"), format!("{} concerns a person, not a team", topic.as_str()));
            }
        }
        errors.into_result(())
    }

    pub fn wants(&self, topic: Topic) -> bool {
        TEAM_TOPICS.contains(&topic) && (self.topics.is_empty() || self.topics.contains(&topic))
    }

    /// The same choices as a person's preferences read them: the team's topics to its webhook
    /// and its e-mail, nothing to an inbox or Slack.
    pub fn as_channels(&self) -> Preferences {
        let topics: Vec<Topic> = TEAM_TOPICS.into_iter().filter(|t| self.wants(*t)).collect();
        Preferences {
            inbox: Vec::new(),
            slack: Vec::new(),
            email: if self.email.is_some() { topics.clone() } else { Vec::new() },
            webhook: self.webhook.clone(),
            webhook_topics: if self.webhook.is_some() { topics } else { Vec::new() },
        }
    }
}

/// The recipient that stands for a team in the notifications kept (a team has no inbox; its
/// notifications keep their deliveries' outcomes).
pub fn team_recipient(team: &str) -> String {
    format!("team:{team}")
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

/// How long before a timer ends its entity's maker is told.
pub const EXPIRY_NOTICE_MS: Millis = 86_400_000;

/// What the person who made an entity is told when one of its timers (a TTL) ends within
/// [`EXPIRY_NOTICE_MS`]: when, and where to extend it (an action that sets the timer, if one
/// exists, opened on the entity), else the entity's page.
pub fn ttl_expiring(entity: &Entity, property: &str, at: Millis, now: Millis, extend: Option<&str>) -> Notice {
    let name = entity.title.as_deref().unwrap_or(&entity.identifier);
    let hours = ((at - now).max(0) + 1_800_000) / 3_600_000;
    let within = if hours == 0 { "in less than an hour".to_string() } else { format!("in about {hours} h") };
    let entity_path = format!("{}/{}", ident::url_segment(&entity.blueprint), ident::url_segment(&entity.identifier));
    let (title, link) = match extend {
        Some(action) => (
            format!("{name} ({}) ends {within} ({property}): extend it if it is still needed", entity.blueprint),
            format!("/actions/{}?entity={}", ident::url_segment(action), ident::url_segment(&entity.identifier)),
        ),
        None => {
            (format!("{name} ({}) ends {within} ({property})", entity.blueprint), format!("/catalog/{entity_path}"))
        }
    };
    Notice { topic: Topic::TtlExpiring, recipient: entity.created_by.clone(), title, link }
}

/// The scorecards whose level is lower after a change than before: identifier, level before and after.
pub fn dropped_levels(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<(String, String, String)> {
    let level = |result: &Value| {
        (
            result.get("levelIndex").and_then(Value::as_i64),
            result.get("level").and_then(Value::as_str).map(str::to_string),
        )
    };
    after
        .iter()
        .filter_map(|(scorecard, now)| {
            let (Some(was), Some(from)) = level(before.get(scorecard)?) else { return None };
            let (Some(is), Some(to)) = level(now) else { return None };
            (is < was).then(|| (scorecard.clone(), from, to))
        })
        .collect()
}

/// What a member of an entity's owning team is told when one of its scorecard levels drops.
pub fn scorecard_dropped(recipient: &str, entity: &Entity, scorecard: &str, from: &str, to: &str) -> Notice {
    let name = entity.title.as_deref().unwrap_or(&entity.identifier);
    Notice {
        topic: Topic::ScorecardDropped,
        recipient: recipient.to_string(),
        title: format!("{name} ({}) dropped from {from} to {to} on {scorecard}", entity.blueprint),
        link: format!("/catalog/{}/{}", ident::url_segment(&entity.blueprint), ident::url_segment(&entity.identifier)),
    }
}

/// What a member of a team is told when an initiative reminds the team of what it has left.
pub fn initiative_reminder(
    recipient: &str,
    initiative: &str,
    title: &str,
    team: &str,
    left: usize,
    due: Millis,
) -> Notice {
    let due = crate::format_millis(due);
    Notice {
        topic: Topic::InitiativeReminder,
        recipient: recipient.to_string(),
        title: format!("{title}: {left} of {team}'s still to do, due {}", due.get(..10).unwrap_or(&due)),
        link: format!("/initiatives/{}", ident::url_segment(initiative)),
    }
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
