//! Who a Slack user is in Portolan: a link made from the same e-mail address (when Slack has
//! confirmed it and exactly one Portolan user has it) or from a one-time link the person opens
//! while signed in to the portal. Every command and click from Slack acts as the linked user,
//! with their permissions, and is audited with origin `slack`.

use std::sync::Arc;

use portolan_model::Millis;
use portolan_store::{SlackLink, SlackThread};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::actor::{Actor, Origin};
use super::core::Core;
use super::identity::Identity;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::slack::api::SlackApi;

/// How long a one-time link may be opened.
pub const LINK_SECONDS: i64 = 600;
const LINK_PURPOSE: &str = "slack-link";

/// What a one-time link carries, sealed: the Slack user, and until when it may be opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCode {
    pub team: String,
    pub user: String,
    pub expires: Millis,
}

#[derive(Clone)]
pub struct Slack {
    core: Core,
    identity: Identity,
    keys: Arc<Keys>,
    pub api: SlackApi,
    public_url: Arc<str>,
}

impl Slack {
    pub fn new(core: Core, identity: Identity, keys: Arc<Keys>, api: SlackApi, public_url: Arc<str>) -> Self {
        Self { core, identity, keys, api, public_url }
    }

    /// The Portolan user a Slack user acts as: their link, or one made now from the e-mail
    /// address Slack confirmed; `None` when neither is there.
    pub async fn actor(&self, team: &str, slack_user: &str) -> Result<Option<Actor>> {
        let link = self.core.store().read().await?.slack_link(team, slack_user).await?;
        let user = match link {
            Some(link) => link.user,
            None => match self.link_by_email(team, slack_user).await? {
                Some(user) => user,
                None => return Ok(None),
            },
        };
        let mut actor = self.identity.actor_of(&user, Origin::Slack).await?;
        actor.request_id = Some(format!("slack:{team}:{slack_user}"));
        Ok(Some(actor))
    }

    async fn link_by_email(&self, team: &str, slack_user: &str) -> Result<Option<String>> {
        if !self.api.sends() {
            return Ok(None);
        }
        let email = match self.api.confirmed_email(slack_user).await {
            Ok(Some(email)) => email,
            Ok(None) => return Ok(None),
            Err(error) => {
                tracing::warn!(%error, "cannot read a Slack user's e-mail address to link them");
                return Ok(None);
            }
        };
        let Some(user) = self.identity.account_with_email(&email).await? else { return Ok(None) };
        let system = Actor::system(format!("slack:{team}:{slack_user}"), Origin::Slack);
        self.put_link(&system, team, slack_user, &user, "email").await?;
        Ok(Some(user))
    }

    /// A one-time link that ties this Slack user to whoever opens it signed in.
    pub fn link_url(&self, team: &str, slack_user: &str) -> Result<String> {
        let code =
            LinkCode { team: team.into(), user: slack_user.into(), expires: self.core.now() + LINK_SECONDS * 1000 };
        let sealed = self.keys.seal_document(LINK_PURPOSE, &code)?;
        Ok(format!("{}/slack/link?code={sealed}", self.public_url))
    }

    /// The Slack user a one-time link names, while it may be opened.
    pub fn open_link(&self, code: &str) -> Result<LinkCode> {
        let refused = || Error::invalid_at("/code", "this link is not valid or has expired; ask Slack for a new one");
        let code: LinkCode = self.keys.open_document(LINK_PURPOSE, code).ok_or_else(refused)?;
        if code.expires <= self.core.now() {
            return Err(refused());
        }
        Ok(code)
    }

    /// Ties the Slack user of a one-time link to the signed-in person opening it. A link works
    /// once: the Slack user's link made since it was issued is its use.
    pub async fn link(&self, actor: &Actor, code: &str) -> Result<SlackLink> {
        let code = self.open_link(code)?;
        let user = actor.as_user().ok_or_else(|| Error::forbidden("only people link a Slack user"))?.id.clone();
        let issued = code.expires - LINK_SECONDS * 1000;
        let existing = self.core.store().read().await?.slack_link(&code.team, &code.user).await?;
        if existing.is_some_and(|link| link.linked_at >= issued) {
            return Err(Error::invalid_at("/code", "this link was used already; ask Slack for a new one"));
        }
        self.put_link(actor, &code.team, &code.user, &user, "link").await
    }

    async fn put_link(
        &self,
        actor: &Actor,
        team: &str,
        slack_user: &str,
        user: &str,
        method: &str,
    ) -> Result<SlackLink> {
        let link = SlackLink {
            team: team.into(),
            slack_user: slack_user.into(),
            user: user.into(),
            linked_at: self.core.now(),
            method: method.into(),
        };
        let mut tx = self.core.store().write().await?;
        tx.put_slack_link(&link).await?;
        let shown = json!({"team": team, "slackUser": slack_user, "user": user, "method": method});
        let entry = actor.entry(self.core.now(), "slack.link", "account", user);
        tx.append_audit(&[entry.changed(None, Some(shown))]).await?;
        tx.commit().await?;
        Ok(link)
    }

    /// The caller's Slack links.
    pub async fn links(&self, actor: &Actor) -> Result<Vec<SlackLink>> {
        Ok(self.core.store().read().await?.slack_links_of(&actor.id).await?)
    }

    /// Removes the caller's Slack links; how many there were.
    pub async fn unlink(&self, actor: &Actor) -> Result<u64> {
        let mut tx = self.core.store().write().await?;
        let removed = tx.delete_slack_links(&actor.id).await?;
        if removed > 0 {
            let entry = actor.entry(self.core.now(), "slack.unlink", "account", &actor.id);
            tx.append_audit(&[entry.changed(Some(json!({"links": removed})), None)]).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Keeps where a run started from Slack is told about, for its updates.
    pub async fn keep_thread(&self, thread: &SlackThread) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        tx.put_slack_thread(thread).await?;
        tx.commit().await?;
        Ok(())
    }
}
