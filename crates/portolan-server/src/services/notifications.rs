//! Each person's notifications: written to their inbox in the transaction of the change they
//! tell of (so none is lost or told twice), and delivered to their webhook, their e-mail address
//! and Slack (when their Slack user is linked) by the background worker, with retries, each channel's outcome
//! kept on the notification. A run started from Slack has its updates told in its thread there.

use std::sync::Arc;

use portolan_model::notification::{self, Channel, Preferences, Topic, delivery_with};
use portolan_model::permission::User;
use portolan_model::run::Run;
use portolan_model::{Entity, Millis, system};
use portolan_store::{Job, NewJob, Notification, Tx};
use serde_json::{Value, json};

use super::actor::Actor;
use super::core::Core;
use crate::email::Mailer;
use crate::error::{Error, Result};
use crate::outbound::{Outbound, Purpose};
use crate::slack::api::{Posted, SlackApi};
use crate::slack::blocks;

/// The job kind that delivers a notification to one channel (or a run's update to its Slack thread).
pub const NOTIFY: &str = "notify";
/// Deliveries tried before the notification is marked undelivered.
const MAX_ATTEMPTS: i64 = 8;
/// How long notifications are kept.
const RETENTION_MS: Millis = 90 * 86_400_000;
/// The most approvers told of one run.
const MAX_APPROVERS_TOLD: usize = 200;
/// The most an inbox answer lists.
pub const MAX_LIST: u32 = 200;

#[derive(Clone)]
pub struct Notifications {
    core: Core,
    outbound: Arc<Outbound>,
    slack: SlackApi,
    mailer: Mailer,
    public_url: Arc<str>,
}

/// How one delivery attempt went.
enum Sent {
    Delivered,
    /// Nothing to send any more (the channel was turned off since), and why.
    Dropped(&'static str),
    /// Worth trying again: why it failed.
    Failed(String),
}

impl Notifications {
    pub fn new(core: Core, outbound: Arc<Outbound>, slack: SlackApi, mailer: Mailer, public_url: Arc<str>) -> Self {
        Self { core, outbound, slack, mailer, public_url }
    }

    /// Whether the server sends e-mail (an SMTP server is configured).
    pub fn sends_email(&self) -> bool {
        self.mailer.sends()
    }

    /// The caller's newest notifications (unread only, if asked), and how many are unread.
    pub async fn inbox(&self, actor: &Actor, unread_only: bool, limit: u32) -> Result<(Vec<Notification>, u64)> {
        let mut tx = self.core.store().read().await?;
        let notes = tx.notifications(&actor.id, unread_only, limit.clamp(1, MAX_LIST)).await?;
        Ok((notes, tx.count_unread_notifications(&actor.id).await?))
    }

    pub async fn unread(&self, actor: &Actor) -> Result<u64> {
        Ok(self.core.store().read().await?.count_unread_notifications(&actor.id).await?)
    }

    /// Marks one of the caller's notifications read (every one, with `None`); how many were unread.
    pub async fn mark_read(&self, actor: &Actor, id: Option<&str>) -> Result<u64> {
        let mut tx = self.core.store().write().await?;
        if let Some(id) = id
            && tx.notification(id).await?.is_none_or(|n| n.user != actor.id)
        {
            return Err(Error::not_found(format!("notification '{id}'")));
        }
        let marked = tx.mark_notifications_read(&actor.id, id, self.core.now()).await?;
        tx.commit().await?;
        Ok(marked)
    }

    pub async fn preferences(&self, actor: &Actor) -> Result<Preferences> {
        let mut tx = self.core.store().read().await?;
        Ok(preferences_of(tx.as_mut(), &actor.id).await?)
    }

    /// Replaces the caller's preferences; a webhook must be one the server may call.
    pub async fn set_preferences(&self, actor: &Actor, preferences: Preferences) -> Result<Preferences> {
        preferences.check().map_err(Error::invalid)?;
        if let Some(webhook) = &preferences.webhook {
            self.outbound.check_field(Purpose::Notification, &webhook.url, "/webhook/url")?;
        }
        if !preferences.email.is_empty() && !self.mailer.sends() {
            return Err(Error::invalid_at("/email", "this server sends no e-mail: an admin sets smtp_url first"));
        }
        let document = serde_json::to_value(&preferences).unwrap_or(Value::Null);
        let mut tx = self.core.store().write().await?;
        tx.put_notification_preferences(&actor.id, &document).await?;
        // The URL is not recorded: a Slack webhook's URL is its secret.
        let shown = json!({"inbox": preferences.inbox, "slack": preferences.slack, "email": preferences.email,
            "webhook": preferences.webhook.is_some(), "webhookTopics": preferences.webhook_topics});
        let entry = actor.entry(self.core.now(), "notifications.preferences", "account", &actor.id);
        tx.append_audit(&[entry.changed(None, Some(shown))]).await?;
        tx.commit().await?;
        Ok(preferences)
    }

    /// Delivers a notification to one of its recipient's channels, or a run's update to its
    /// Slack thread (a worker job). A failure is retried, with a growing delay, up to
    /// [`MAX_ATTEMPTS`]; then the notification says it was not delivered there, and why.
    pub async fn deliver(&self, job: &Job, owner: &str) -> Result<()> {
        let channel = job.payload.get("channel").and_then(Value::as_str).and_then(Channel::parse);
        let channel = channel.unwrap_or(Channel::Webhook);
        let outcome = |text: &str, done: bool| self.record(job, owner, channel, text.to_string(), done);
        let sent = if let Some(run) = job.payload.get("thread").and_then(Value::as_str) {
            self.to_thread(run).await?
        } else {
            let Some(id) = job.payload.get("notification").and_then(Value::as_str) else {
                return outcome("", true).await;
            };
            let (note, preferences) = {
                let mut tx = self.core.store().read().await?;
                let Some(note) = tx.notification(id).await? else {
                    drop(tx);
                    return outcome("", true).await;
                };
                let preferences = preferences_of(tx.as_mut(), &note.user).await?;
                (note, preferences)
            };
            match channel {
                Channel::Webhook => self.to_webhook(&note, preferences).await,
                Channel::Slack => self.to_slack(&note, &preferences).await?,
                Channel::Email => self.to_email(&note, &preferences).await?,
            }
        };
        let failure = match sent {
            Sent::Delivered => return outcome("delivered", true).await,
            Sent::Dropped(why) => return outcome(why, true).await,
            Sent::Failed(failure) => failure,
        };
        let attempt = job.attempts + 1;
        if attempt >= MAX_ATTEMPTS {
            return outcome(&format!("not delivered after {attempt} attempts: {failure}"), true).await;
        }
        outcome(&format!("retrying (attempt {attempt} of {MAX_ATTEMPTS}): {failure}"), false).await?;
        Err(Error::new(crate::error::ErrorCode::Unavailable, failure))
    }

    async fn to_webhook(&self, note: &Notification, preferences: Preferences) -> Sent {
        let topic = Topic::parse(&note.topic).filter(|&topic| preferences.to_webhook(topic));
        let (Some(topic), Some(webhook)) = (topic, preferences.webhook) else {
            return Sent::Dropped("not sent: the webhook was removed since");
        };
        let url = format!("{}{}", self.public_url, note.link);
        let body = notification::webhook_body(webhook.format, topic, &note.title, &url, &note.id);
        let sent = match self.outbound.request(Purpose::Notification, reqwest::Method::POST, &webhook.url) {
            Ok(request) => request.json(&body).send().await.map_err(|e| e.to_string()),
            Err(refused) => Err(refused.to_string()),
        };
        // Neither outcome names the URL: a Slack webhook's URL is its secret.
        match sent {
            Ok(response) if response.status().is_success() => Sent::Delivered,
            Ok(response) => Sent::Failed(format!("the webhook answered {}", response.status().as_u16())),
            Err(error) => Sent::Failed(format!("the webhook was not reached: {error}")),
        }
    }

    /// A direct message from the app to the recipient's Slack user; an approval request
    /// carries buttons to approve or decline.
    async fn to_slack(&self, note: &Notification, preferences: &Preferences) -> Result<Sent> {
        if !Topic::parse(&note.topic).is_some_and(|topic| preferences.to_slack(topic)) {
            return Ok(Sent::Dropped("not sent: Slack was turned off for this since"));
        }
        let links = self.core.store().read().await?.slack_links_of(&note.user).await?;
        let Some(link) = links.last() else { return Ok(Sent::Dropped("not sent: the Slack user was unlinked since")) };
        let url = format!("{}{}", self.public_url, note.link);
        let run = note.link.strip_prefix("/runs/").filter(|_| note.topic == Topic::ApprovalNeeded.as_str());
        let blocks = match run {
            Some(run) => blocks::approval_request(&note.title, &url, run),
            None => blocks::notice(&note.title, &url),
        };
        Ok(match self.slack.post_message(&link.slack_user, &note.title, &blocks, None).await {
            Ok(_) => Sent::Delivered,
            Err(error) => Sent::Failed(error.to_string()),
        })
    }

    /// An e-mail to the recipient's address (their `email`, or an identifier that is one).
    async fn to_email(&self, note: &Notification, preferences: &Preferences) -> Result<Sent> {
        if !Topic::parse(&note.topic).is_some_and(|topic| preferences.to_email(topic)) {
            return Ok(Sent::Dropped("not sent: e-mail was turned off for this since"));
        }
        if !self.mailer.sends() {
            return Ok(Sent::Dropped("not sent: this server sends no e-mail any more"));
        }
        let person = self.core.store().read().await?.entity(system::USER, &note.user).await?;
        let Some(address) = person.as_ref().and_then(email_address) else {
            return Ok(Sent::Dropped("not sent: you have no e-mail address"));
        };
        let url = format!("{}{}", self.public_url, note.link);
        let body = format!(
            "{}\n\nOpen it in Portolan: {url}\n\nYou are told this by e-mail because you chose to; change it at {}/inbox\n",
            note.title, self.public_url
        );
        let subject = portolan_model::slack::clip(&note.title, 150);
        Ok(match self.mailer.send(&address, &subject, body).await {
            Ok(()) => Sent::Delivered,
            Err(error) => Sent::Failed(error),
        })
    }

    /// A run's change, told in the thread of the Slack message about it, which is updated too.
    async fn to_thread(&self, run: &str) -> Result<Sent> {
        let (run, thread) = {
            let mut tx = self.core.store().read().await?;
            (tx.run(run, false).await?, tx.slack_thread(run).await?)
        };
        let (Some(run), Some(thread)) = (run, thread) else { return Ok(Sent::Dropped("")) };
        let url = format!("{}/runs/{}", self.public_url, run.id);
        let (text, message) = blocks::run_message(&run, &url);
        let reply = blocks::notice(&format!("Now {}", blocks::status_words(&run)), &url);
        let parent = Posted { channel: thread.channel, ts: thread.ts };
        let sent = match self.slack.post_message(&parent.channel, &text, &reply, Some(&parent.ts)).await {
            Ok(_) => self.slack.update_message(&parent, &text, &message).await,
            Err(error) => Err(error),
        };
        Ok(match sent {
            Ok(()) => Sent::Delivered,
            Err(error) => Sent::Failed(error.to_string()),
        })
    }

    /// Keeps how a delivery went on its notification and, when it is over, ends the job.
    async fn record(&self, job: &Job, owner: &str, channel: Channel, outcome: String, done: bool) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        if let Some(id) = job.payload.get("notification").and_then(Value::as_str)
            && !outcome.is_empty()
            && let Some(note) = tx.notification(id).await?
        {
            tx.set_notification_delivery(id, &delivery_with(note.delivery.as_deref(), channel, &outcome)).await?;
        }
        if done {
            tx.complete_job(job.id, owner).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes notifications past their retention; how many.
    pub async fn prune(&self) -> Result<u64> {
        let mut tx = self.core.store().write().await?;
        let deleted = tx.delete_notifications_before(self.core.now() - RETENTION_MS).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

async fn preferences_of(tx: &mut dyn Tx, user: &str) -> portolan_store::Result<Preferences> {
    Ok(tx.notification_preferences(user).await?.and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default())
}

/// In the transaction of a run's change: what it tells its requester, or (a run that starts by
/// waiting for approval) its approvers, each in their inbox if they keep the topic there, with a webhook delivery
/// queued where their preferences ask for one.
pub(crate) async fn notify_run(tx: &mut dyn Tx, before: Option<&Run>, run: &Run, now: Millis) -> Result<()> {
    if let Some(notice) = notification::for_run(before, run) {
        tell(tx, notice, now).await?;
    }
    if before.is_some_and(|b| b.status != run.status) && tx.slack_thread(&run.id).await?.is_some() {
        let job = NewJob {
            kind: NOTIFY.into(),
            dedupe_key: None,
            payload: json!({"thread": run.id, "channel": Channel::Slack.as_str()}),
            run_after: now,
        };
        tx.enqueue_jobs(&[job]).await?;
    }
    if before.is_none() {
        for approver in approvers(tx, run).await? {
            if let Some(notice) = notification::approval_needed(run, &approver) {
                tell(tx, notice, now).await?;
            }
        }
    }
    Ok(())
}

/// The people who may decide a run's approval, when its rule names them (users, teams, roles);
/// a rule that leaves it to permission grants names nobody to tell, and its run waits on the
/// approvers' page. At most [`MAX_APPROVERS_TOLD`].
async fn approvers(tx: &mut dyn Tx, run: &Run) -> Result<Vec<String>> {
    let Some(approval) = run.approval.as_ref().filter(|a| a.approvers.is_some()) else { return Ok(Vec::new()) };
    let accounts = tx.accounts().await?;
    let ids: Vec<String> = accounts.iter().map(|a| a.user.clone()).collect();
    let people = tx.entities(system::USER, &ids).await?;
    let mut told = Vec::new();
    for account in &accounts {
        let Some(person) = people.iter().find(|e| e.identifier == account.user) else { continue };
        if person.properties.get("status").and_then(Value::as_str) == Some("disabled") {
            continue;
        }
        let user = User { id: account.user.clone(), role: account.role, teams: person.team.clone() };
        if approval.may_decide(&user, false) {
            told.push(user.id);
        }
        if told.len() == MAX_APPROVERS_TOLD {
            break;
        }
    }
    Ok(told)
}

async fn tell(tx: &mut dyn Tx, notice: notification::Notice, now: Millis) -> Result<()> {
    let preferences = preferences_of(tx, &notice.recipient).await?;
    let inbox = preferences.to_inbox(notice.topic);
    let mut channels = Vec::new();
    if preferences.to_webhook(notice.topic) {
        channels.push(Channel::Webhook);
    }
    if preferences.to_slack(notice.topic) && !tx.slack_links_of(&notice.recipient).await?.is_empty() {
        channels.push(Channel::Slack);
    }
    if preferences.to_email(notice.topic) {
        channels.push(Channel::Email);
    }
    if !inbox && channels.is_empty() {
        return Ok(());
    }
    let id = format!("ntf_{}", uuid::Uuid::new_v4().simple());
    let delivery = channels
        .iter()
        .fold(None, |so_far: Option<String>, &channel| Some(delivery_with(so_far.as_deref(), channel, "queued")));
    tx.insert_notification(&Notification {
        id: id.clone(),
        user: notice.recipient,
        topic: notice.topic.as_str().into(),
        title: notice.title,
        link: notice.link,
        created_at: now,
        // Left out of the inbox, yet sent elsewhere: kept, as read, for its deliveries' outcome.
        read_at: (!inbox).then_some(now),
        delivery,
    })
    .await?;
    let jobs: Vec<NewJob> = channels
        .iter()
        .map(|channel| NewJob {
            kind: NOTIFY.into(),
            dedupe_key: None,
            payload: json!({"notification": id, "channel": channel.as_str()}),
            run_after: now,
        })
        .collect();
    if !jobs.is_empty() {
        tx.enqueue_jobs(&jobs).await?;
    }
    Ok(())
}

/// A person's e-mail address: their `email`, or their identifier when it is one.
fn email_address(person: &Entity) -> Option<String> {
    let own = person.properties.get("email").and_then(Value::as_str).filter(|e| e.contains('@'));
    own.map(str::to_string).or_else(|| person.identifier.contains('@').then(|| person.identifier.clone()))
}
