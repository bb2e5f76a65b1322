//! Each person's notifications: written to their inbox in the transaction of the change they
//! tell of (so none is lost or told twice), and delivered to their webhook, their e-mail address
//! and Slack (when their Slack user is linked) by the background worker, with retries, each channel's outcome
//! kept on the notification. A run started from Slack has its updates told in its thread there.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use portolan_model::notification::{self, Channel, Preferences, TeamPreferences, Topic, delivery_with, team_recipient};
use portolan_model::permission::User;
use portolan_model::run::Run;
use portolan_model::{Entity, Millis, system};
use portolan_store::{Job, NewJob, Notification, Tx};
use serde_json::{Value, json};

use super::actor::Actor;
use super::core::Core;
use super::identity::active_user;
use super::permissions::Permissions;
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
/// How a team's recipient begins (see [`team_recipient`]).
const TEAM_PREFIX: &str = "team:";
/// The most people told of one thing (the approvers of a run, the members of a team).
const MAX_PEOPLE_TOLD: usize = 200;
/// The most an inbox answer lists.
pub const MAX_LIST: u32 = 200;

#[derive(Clone)]
pub struct Notifications {
    core: Core,
    outbound: Arc<Outbound>,
    slack: SlackApi,
    mailer: Mailer,
    permissions: Permissions,
    public_url: Arc<str>,
    /// Deliveries' outcomes, committed together (started with the first one).
    outcomes: Arc<OnceLock<mpsc::Sender<Outcome>>>,
}

/// How a delivery went, to keep on its notification (and its job to end, when it is over).
struct Outcome {
    job: i64,
    owner: String,
    notification: Option<String>,
    channel: Channel,
    text: String,
    done: bool,
    kept: oneshot::Sender<Result<()>>,
}

/// The most outcomes one commit keeps.
const OUTCOME_BATCH: usize = 256;

/// What [`Notifications`] is built from.
pub struct NotificationsParts {
    pub core: Core,
    pub outbound: Arc<Outbound>,
    pub slack: SlackApi,
    pub mailer: Mailer,
    pub permissions: Permissions,
    pub public_url: Arc<str>,
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
    pub fn new(parts: NotificationsParts) -> Self {
        let NotificationsParts { core, outbound, slack, mailer, permissions, public_url } = parts;
        Self { core, outbound, slack, mailer, permissions, public_url, outcomes: Arc::default() }
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

    /// A team's notification preferences: its members' and the admins' to read and change.
    pub async fn team_preferences(&self, actor: &Actor, team: &str) -> Result<TeamPreferences> {
        let mut tx = self.core.store().read().await?;
        may_change_team(tx.as_mut(), actor, team).await?;
        Ok(team_preferences_of(tx.as_mut(), team).await?)
    }

    /// Replaces a team's preferences; its webhook must be one the server may call, and e-mail
    /// needs an SMTP server.
    pub async fn set_team_preferences(
        &self,
        actor: &Actor,
        team: &str,
        preferences: TeamPreferences,
    ) -> Result<TeamPreferences> {
        preferences.check().map_err(Error::invalid)?;
        if let Some(webhook) = &preferences.webhook {
            self.outbound.check_field(Purpose::Notification, &webhook.url, "/webhook/url")?;
        }
        if preferences.email.is_some() && !self.mailer.sends() {
            return Err(Error::invalid_at("/email", "this server sends no e-mail: an admin sets smtp_url first"));
        }
        let mut tx = self.core.store().write().await?;
        may_change_team(tx.as_mut(), actor, team).await?;
        let document = serde_json::to_value(&preferences).unwrap_or(Value::Null);
        tx.put_notification_preferences(&team_recipient(team), &document).await?;
        let shown =
            json!({"webhook": preferences.webhook.is_some(), "email": preferences.email, "topics": preferences.topics});
        let entry = actor.entry(self.core.now(), "notifications.team-preferences", "team", team);
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
        if let Some(drop) = job.payload.get("dropped") {
            return self.tell_drop(job, owner, drop).await;
        }
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
        let address = {
            let mut tx = self.core.store().read().await?;
            match note.user.strip_prefix(TEAM_PREFIX) {
                Some(team) => team_preferences_of(tx.as_mut(), team).await?.email,
                None => tx.entity(system::USER, &note.user).await?.as_ref().and_then(email_address),
            }
        };
        let Some(address) = address else {
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

    /// Tells the members of an entity's owning teams who may read it that one of its scorecard
    /// levels dropped (a job queued by the change, so that finding them is off its write path).
    async fn tell_drop(&self, job: &Job, owner: &str, drop: &Value) -> Result<()> {
        let text = |name: &str| drop.get(name).and_then(Value::as_str).unwrap_or_default();
        let now = self.core.now();
        let mut tx = self.core.store().write().await?;
        if let Some(entity) = tx.entity(text("blueprint"), text("identifier")).await? {
            let scorecards = tx.scorecards(&entity.blueprint).await?;
            let scorecard = scorecards.iter().find(|r| r.scorecard.identifier == text("scorecard"));
            let title = scorecard.and_then(|r| r.scorecard.title.clone()).unwrap_or_else(|| text("scorecard").into());
            for member in members(tx.as_mut(), &entity.team).await? {
                let reader = Actor::user(member, super::actor::Origin::Automation);
                if self.permissions.readable_refs(tx.as_mut(), &reader, &[entity.entity_ref()]).await.is_empty() {
                    continue;
                }
                let notice = notification::scorecard_dropped(&reader.id, &entity, &title, text("from"), text("to"));
                tell(tx.as_mut(), notice, now).await?;
            }
            let notice = notification::scorecard_dropped("", &entity, &title, text("from"), text("to"));
            tell_teams(tx.as_mut(), &entity.team, &notice, now).await?;
        }
        tx.complete_job(job.id, owner).await?;
        tx.commit().await?;
        self.core.wake_worker();
        Ok(())
    }

    /// Keeps how a delivery went on its notification and, when it is over, ends the job; returns
    /// once that is committed. The outcomes of deliveries that end together share one commit, so
    /// that a fan-out's deliveries are not held back by a write each.
    async fn record(&self, job: &Job, owner: &str, channel: Channel, text: String, done: bool) -> Result<()> {
        let sender = self.outcomes.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(OUTCOME_BATCH * 4);
            tokio::spawn(keep_outcomes(self.core.clone(), receiver));
            sender
        });
        let (kept, done_keeping) = oneshot::channel();
        let notification = job.payload.get("notification").and_then(Value::as_str).map(str::to_string);
        let outcome = Outcome { job: job.id, owner: owner.to_string(), notification, channel, text, done, kept };
        let stopped = || Error::new(crate::error::ErrorCode::Unavailable, "the notifications' writer has stopped");
        sender.send(outcome).await.map_err(|_| stopped())?;
        done_keeping.await.map_err(|_| stopped())?
    }

    /// Deletes notifications past their retention; how many.
    pub async fn prune(&self) -> Result<u64> {
        let mut tx = self.core.store().write().await?;
        let deleted = tx.delete_notifications_before(self.core.now() - RETENTION_MS).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

/// A recipient's channels: a person's preferences, or a team's (`team:<id>`) read as channels.
async fn preferences_of(tx: &mut dyn Tx, recipient: &str) -> portolan_store::Result<Preferences> {
    if let Some(team) = recipient.strip_prefix(TEAM_PREFIX) {
        return Ok(team_preferences_of(tx, team).await?.as_channels());
    }
    Ok(tx.notification_preferences(recipient).await?.and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default())
}

async fn team_preferences_of(tx: &mut dyn Tx, team: &str) -> portolan_store::Result<TeamPreferences> {
    let document = tx.notification_preferences(&team_recipient(team)).await?;
    Ok(document.and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default())
}

/// A team's preferences are for its members and the admins; a team that does not exist is not found.
async fn may_change_team(tx: &mut dyn Tx, actor: &Actor, team: &str) -> Result<()> {
    if tx.entity(system::TEAM, team).await?.is_none() {
        return Err(Error::not_found(format!("team '{team}'")));
    }
    match actor.as_user() {
        Some(user) if user.role == portolan_model::permission::Role::Admin || user.teams.iter().any(|t| t == team) => {
            Ok(())
        }
        _ => Err(Error::forbidden(format!("only the members of '{team}' and admins set its notifications"))),
    }
}

/// Tells each of these teams (their channels, when they chose the topic) what a notice says.
pub(crate) async fn tell_teams(
    tx: &mut dyn Tx,
    teams: &[String],
    notice: &notification::Notice,
    now: Millis,
) -> Result<()> {
    for team in teams {
        tell(tx, notification::Notice { recipient: team_recipient(team), ..notice.clone() }, now).await?;
    }
    Ok(())
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
        let teams = run.approval.as_ref().and_then(|a| a.approvers.as_ref()).map(|a| a.teams.clone());
        if let (Some(teams), Some(notice)) = (teams, notification::approval_needed(run, "")) {
            tell_teams(tx, &teams, &notice, now).await?;
        }
    }
    Ok(())
}

/// The people who may decide a run's approval, when its rule names them (users, teams, roles);
/// a rule that leaves it to permission grants names nobody to tell, and its run waits on the
/// approvers' page. At most [`MAX_PEOPLE_TOLD`].
async fn approvers(tx: &mut dyn Tx, run: &Run) -> Result<Vec<String>> {
    let Some(approval) = run.approval.as_ref().filter(|a| a.approvers.is_some()) else { return Ok(Vec::new()) };
    let people = people(tx).await?;
    Ok(people.into_iter().filter(|user| approval.may_decide(user, false)).take(MAX_PEOPLE_TOLD).map(|u| u.id).collect())
}

/// Commits the outcomes sent to it, as many at once as are waiting; each sender is told how it went.
async fn keep_outcomes(core: Core, mut receiver: mpsc::Receiver<Outcome>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < OUTCOME_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let written = async {
            let mut tx = core.store().write().await?;
            for outcome in &batch {
                if let Some(id) = outcome.notification.as_deref().filter(|_| !outcome.text.is_empty())
                    && let Some(note) = tx.notification(id).await?
                {
                    let delivery = delivery_with(note.delivery.as_deref(), outcome.channel, &outcome.text);
                    tx.set_notification_delivery(id, &delivery).await?;
                }
                if outcome.done {
                    tx.complete_job(outcome.job, &outcome.owner).await?;
                }
            }
            tx.commit().await?;
            Ok::<(), Error>(())
        };
        let result = written.await;
        for outcome in batch {
            let _ = outcome.kept.send(result.clone());
        }
    }
}

/// In the transaction of an entity's change: a job to tell its owning teams of each scorecard
/// level the change lowered.
pub(crate) async fn queue_drops(tx: &mut dyn Tx, before: Option<&Entity>, after: &Entity, now: Millis) -> Result<()> {
    let Some(before) = before.filter(|_| !after.team.is_empty()) else { return Ok(()) };
    let jobs: Vec<NewJob> = notification::dropped_levels(&before.scorecards, &after.scorecards)
        .into_iter()
        .map(|(scorecard, from, to)| NewJob {
            kind: NOTIFY.into(),
            dedupe_key: None,
            payload: json!({"dropped": {"blueprint": after.blueprint, "identifier": after.identifier,
                "scorecard": scorecard, "from": from, "to": to}}),
            run_after: now,
        })
        .collect();
    if !jobs.is_empty() {
        tx.enqueue_jobs(&jobs).await?;
    }
    Ok(())
}

/// Every person with an account that is not disabled, as permissions judge them.
async fn people(tx: &mut dyn Tx) -> Result<Vec<User>> {
    let accounts = tx.accounts().await?;
    let ids: Vec<String> = accounts.iter().map(|a| a.user.clone()).collect();
    let entities = tx.entities(system::USER, &ids).await?;
    Ok(accounts
        .into_iter()
        .filter_map(|account| active_user(&account, entities.iter().find(|e| e.identifier == account.user)?))
        .collect())
}

/// One person with an account that is not disabled; `None` for anyone else (`portolan`, a service).
pub(crate) async fn person(tx: &mut dyn Tx, id: &str) -> Result<Option<User>> {
    let Some(account) = tx.account(id).await? else { return Ok(None) };
    let Some(entity) = tx.entity(system::USER, id).await? else { return Ok(None) };
    Ok(active_user(&account, &entity))
}

/// The members of any of these teams (at most [`MAX_PEOPLE_TOLD`]).
pub(crate) async fn members(tx: &mut dyn Tx, teams: &[String]) -> Result<Vec<User>> {
    let people = people(tx).await?;
    Ok(people.into_iter().filter(|u| u.teams.iter().any(|t| teams.contains(t))).take(MAX_PEOPLE_TOLD).collect())
}

/// Writes a notice to its recipient's inbox (if they keep its topic there) and queues its
/// delivery to each other channel they chose, in the caller's transaction.
pub(crate) async fn tell(tx: &mut dyn Tx, notice: notification::Notice, now: Millis) -> Result<()> {
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
