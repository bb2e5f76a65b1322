//! Actions, the secrets their templates read, and the tokens runners claim work with.

use std::collections::BTreeMap;

use portolan_model::action::{Action, check_secret_name};
use portolan_store::{ActionRecord, RunnerToken, SecretMeta, StoreError, Tx};
use serde_json::{Value, json};

use std::sync::Arc;

use super::actor::{Actor, Principal};
use super::core::{Core, all_blueprints, identifier_from_path, load_action, strip_server_fields, to_json};
use super::permissions::Permissions;
use crate::error::{Error, ErrorCode, Result};
use crate::keys;
use crate::keys::Keys;
use crate::outbound::Outbound;
use crate::outbound::Purpose;
use portolan_model::permission::{Access, ActionOp};

/// Longest secret value accepted, in bytes.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Action definitions, secrets and runner tokens.
#[derive(Clone)]
pub struct Actions {
    core: Core,
    permissions: Permissions,
    keys: Arc<Keys>,
    outbound: Arc<Outbound>,
}

impl Actions {
    pub fn new(core: Core, permissions: Permissions, keys: Arc<Keys>, outbound: Arc<Outbound>) -> Self {
        Self { core, permissions, keys, outbound }
    }
}

impl Actions {
    /// The actions the actor may run (or manage).
    pub async fn list_actions(&self, actor: &Actor, blueprint: Option<&str>) -> Result<Vec<ActionRecord>> {
        let mut tx = self.core.store().read().await?;
        let mut shown = Vec::new();
        for record in tx.actions().await? {
            if blueprint.is_none_or(|b| record.action.blueprint() == Some(b))
                && self.may_see_action(tx.as_mut(), actor, &record).await?
            {
                shown.push(record);
            }
        }
        Ok(shown)
    }

    /// An action the actor may run or manage; 404 for others.
    pub async fn get_action(&self, actor: &Actor, identifier: &str) -> Result<ActionRecord> {
        let mut tx = self.core.store().read().await?;
        let record = load_action(tx.as_mut(), identifier).await?;
        if !self.may_see_action(tx.as_mut(), actor, &record).await? {
            return Err(Error::hidden(format!("action '{identifier}'")));
        }
        Ok(record)
    }

    /// Refuses an action the actor could use to reach beyond what they control: they must manage
    /// its blueprint and the blueprint its built-in backend writes; writing users or teams, and
    /// reading secrets (which a template could send anywhere), is for admins.
    async fn require_define(&self, tx: &mut dyn Tx, actor: &Actor, action: &Action) -> Result<()> {
        self.permissions.require_manage(tx, actor, action.blueprint()).await?;
        match action.written_blueprint() {
            Some(target) if portolan_model::system::is_system(target) => {
                self.permissions.require_manage(tx, actor, None).await?
            }
            Some(target) => self.permissions.require_manage(tx, actor, Some(target)).await?,
            None => {}
        }
        if !action.secret_names().is_empty() {
            self.permissions.require_manage(tx, actor, None).await?;
        }
        Ok(())
    }

    pub(crate) async fn may_see_action(&self, tx: &mut dyn Tx, actor: &Actor, record: &ActionRecord) -> Result<bool> {
        let Some(user) = actor.as_user() else { return Ok(!matches!(actor.principal, Principal::Run(_))) };
        let blueprint = match record.action.blueprint() {
            Some(b) => Some(self.permissions.blueprint_permissions(tx, b).await?),
            None => None,
        };
        let permissions = self.permissions.action_permissions(tx, &record.action.identifier).await?;
        Ok(blueprint.as_ref().is_some_and(|b| b.may_manage(user))
            || user.is_admin()
            || [ActionOp::Execute, ActionOp::Approve]
                .into_iter()
                .any(|op| permissions.access(user, blueprint.as_ref(), op) != Access::Nothing))
    }

    /// Creates an action, or (with `path_identifier`, PUT) replaces the one the URL names.
    pub async fn put_action(
        &self,
        actor: &Actor,
        path_identifier: Option<&str>,
        mut document: Value,
    ) -> Result<(ActionRecord, bool)> {
        strip_server_fields(&mut document);
        if let Some(id) = path_identifier {
            identifier_from_path(&mut document, id)?;
        }
        let action = Action::from_json(document)?;
        let mut tx = self.core.store().write().await?;
        self.require_define(tx.as_mut(), actor, &action).await?;
        let blueprints = all_blueprints(tx.as_mut()).await?;
        action.validate(&blueprints)?;
        self.check_notify_url(&action)?;
        let existing = tx.action(&action.identifier).await?;
        // Which runners get a run, and which of their tasks it runs, is for admins: a moderator
        // may edit a runner action's form, not point it at other machines or other programs.
        if action.runner_wiring().is_some()
            && existing.as_ref().and_then(|r| r.action.runner_wiring()) != action.runner_wiring()
        {
            self.permissions
                .require_manage(tx.as_mut(), actor, None)
                .await
                .map_err(|_| Error::forbidden("only an admin may choose the runner labels and task of an action"))?;
        }
        let now = self.core.now();
        let record = match (&existing, path_identifier) {
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("action '{}' already exists; PUT /api/v1/actions/{0} replaces it", action.identifier),
                ));
            }
            (None, Some(id)) => return Err(Error::not_found(format!("action '{id}'"))),
            (Some(current), Some(_)) => {
                self.require_define(tx.as_mut(), actor, &current.action).await?;
                ActionRecord {
                    action,
                    created_at: current.created_at,
                    created_by: current.created_by.clone(),
                    updated_at: now,
                    updated_by: actor.id.clone(),
                }
            }
            (None, None) => ActionRecord {
                action,
                created_at: now,
                created_by: actor.id.clone(),
                updated_at: now,
                updated_by: actor.id.clone(),
            },
        };
        match tx.put_action(&record, existing.is_none()).await {
            Err(StoreError::Conflict(_)) => {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("action '{}' already exists", record.action.identifier),
                ));
            }
            other => other?,
        }
        let id = &record.action.identifier;
        let mut entry = actor
            .entry(now, if existing.is_none() { "action.create" } else { "action.update" }, "action", id)
            .changed(existing.as_ref().map(|r| to_json(&r.action)), Some(to_json(&record.action)));
        entry.blueprint = record.action.blueprint().map(str::to_string);
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok((record, existing.is_none()))
    }

    /// Deletes an action; its runs stay, as history.
    pub async fn delete_action(&self, actor: &Actor, identifier: &str) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        let record = load_action(tx.as_mut(), identifier).await?;
        self.permissions.require_manage(tx.as_mut(), actor, record.action.blueprint()).await?;
        if !tx.delete_action(identifier).await? {
            return Err(Error::not_found(format!("action '{identifier}'")));
        }
        let mut entry = actor
            .entry(self.core.now(), "action.delete", "action", identifier)
            .changed(Some(to_json(&record.action)), None);
        entry.blueprint = record.action.blueprint().map(str::to_string);
        tx.append_audit(&[entry]).await?;
        self.permissions.drop_permissions(tx.as_mut(), None, Some(identifier)).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- secrets ----

    pub async fn list_secrets(&self, actor: &Actor) -> Result<Vec<SecretMeta>> {
        let mut tx = self.core.store().read().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        Ok(tx.secrets().await?.into_iter().filter(|s| s.name != SIGNING_KEY_NAME).collect())
    }

    /// The server's webhook signing key, which signs the deliveries of `WEBHOOK` actions that
    /// name no `signingSecret`; made on first use.
    pub(crate) async fn server_signing_key(&self) -> Result<String> {
        if let Some(sealed) = self.core.store().read().await?.secret(SIGNING_KEY_NAME).await? {
            return self.keys.open(SIGNING_KEY_NAME, &sealed);
        }
        let mut tx = self.core.store().write().await?;
        if let Some(sealed) = tx.secret(SIGNING_KEY_NAME).await? {
            return self.keys.open(SIGNING_KEY_NAME, &sealed);
        }
        let key = new_signing_key();
        tx.put_secret(SIGNING_KEY_NAME, &self.keys.seal(SIGNING_KEY_NAME, &key)?, self.core.now(), "portolan").await?;
        tx.commit().await?;
        Ok(key)
    }

    /// The server's webhook signing key, for an admin configuring a receiver (the reading is
    /// audited).
    pub async fn signing_key(&self, actor: &Actor) -> Result<String> {
        self.permissions.require_manage(self.core.store().read().await?.as_mut(), actor, None).await?;
        let key = self.server_signing_key().await?;
        let mut tx = self.core.store().write().await?;
        tx.append_audit(&[actor.entry(self.core.now(), "signing-key.read", "secret", SIGNING_KEY_NAME)]).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Replaces the server's webhook signing key; deliveries from now on are signed with the new one.
    pub async fn rotate_signing_key(&self, actor: &Actor) -> Result<String> {
        let key = new_signing_key();
        let sealed = self.keys.seal(SIGNING_KEY_NAME, &key)?;
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        tx.put_secret(SIGNING_KEY_NAME, &sealed, self.core.now(), &actor.id).await?;
        tx.append_audit(&[actor.entry(self.core.now(), "signing-key.rotate", "secret", SIGNING_KEY_NAME)]).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Stores a secret (encrypted); true when it is new.
    pub async fn put_secret(&self, actor: &Actor, name: &str, value: &str) -> Result<bool> {
        check_secret_name(name).map_err(|m| Error::invalid_at("/name", m))?;
        if value.is_empty() || value.len() > MAX_SECRET_BYTES {
            return Err(Error::invalid_at("/value", format!("must be 1 to {MAX_SECRET_BYTES} bytes")));
        }
        let sealed = self.keys.seal(name, value)?;
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        let created = tx.put_secret(name, &sealed, self.core.now(), &actor.id).await?;
        // The name only: a secret's value never enters the log.
        let action = if created { "secret.create" } else { "secret.replace" };
        tx.append_audit(&[actor.entry(self.core.now(), action, "secret", name)]).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Deletes a secret no action reads.
    pub async fn delete_secret(&self, actor: &Actor, name: &str) -> Result<()> {
        check_secret_name(name).map_err(|m| Error::invalid_at("/name", m))?;
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        let mut users: Vec<(&str, String)> = Vec::new();
        for record in tx.actions().await? {
            if record.action.secret_names().iter().any(|n| n == name) {
                users.push(("action", record.action.identifier));
            }
        }
        for integration in tx.integrations().await? {
            if integration.secret_names().contains(&name) {
                users.push(("integration", integration.identifier));
            }
        }
        for location in tx.locations().await? {
            if location.secret_names().contains(&name) {
                users.push(("location", location.id));
            }
        }
        if !users.is_empty() {
            let named: Vec<String> = users.iter().map(|(kind, id)| format!("{kind} '{id}'")).collect();
            return Err(Error::new(ErrorCode::InUse, format!("secret '{name}' is used by {}", named.join(", ")))
                .with_details(users.into_iter().map(|(kind, id)| json!({ kind: id })).collect()));
        }
        tx.append_audit(&[actor.entry(self.core.now(), "secret.delete", "secret", name)]).await?;
        if !tx.delete_secret(name).await? {
            return Err(Error::not_found(format!("secret '{name}'")));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The secrets an action reads that do not exist yet. An action may be saved before them, as
    /// in Port: its runs fail, naming the secret, until it is created.
    pub async fn missing_secrets(&self, action: &Action) -> Result<Vec<String>> {
        let stored: Vec<String> =
            self.core.store().read().await?.secrets().await?.into_iter().map(|s| s.name).collect();
        Ok(action.secret_names().into_iter().filter(|name| !stored.contains(name)).collect())
    }

    /// The values of the named secrets, decrypted.
    pub(crate) async fn secret_values(&self, tx: &mut dyn Tx, names: &[String]) -> Result<BTreeMap<String, String>> {
        let mut values = BTreeMap::new();
        for name in names {
            let sealed = tx.secret(name).await?.ok_or_else(|| {
                Error::new(
                    ErrorCode::ValidationFailed,
                    format!("secret '{name}' does not exist: create it at /api/v1/secrets (or on the Secrets page)"),
                )
            })?;
            values.insert(name.clone(), self.keys.open(name, &sealed)?);
        }
        Ok(values)
    }

    // ---- runner tokens ----

    /// Creates a runner token; the token itself is returned only here.
    pub async fn create_runner_token(
        &self,
        actor: &Actor,
        name: &str,
        labels: Vec<String>,
    ) -> Result<(RunnerToken, String)> {
        if name.trim().is_empty() || name.len() > 200 {
            return Err(Error::invalid_at("/name", "give the token a name of 1 to 200 characters"));
        }
        if labels.is_empty() || labels.iter().any(|l| l.trim().is_empty() || l.contains(',')) {
            return Err(Error::invalid_at("/labels", "list at least one label; labels hold no commas"));
        }
        let (token, hash) = keys::new_token();
        let record = RunnerToken {
            id: format!("rt_{}", uuid::Uuid::new_v4().simple()),
            name: name.to_string(),
            token_sha256: hash,
            labels,
            created_at: self.core.now(),
            created_by: actor.id.clone(),
            last_used_at: None,
            revoked_at: None,
        };
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        tx.insert_runner_token(&record).await?;
        let entry = actor
            .entry(record.created_at, "runner-token.create", "runner-token", &record.id)
            .changed(None, Some(json!({"name": record.name, "labels": record.labels})));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok((record, token))
    }

    pub async fn list_runner_tokens(&self, actor: &Actor) -> Result<Vec<RunnerToken>> {
        let mut tx = self.core.store().read().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        Ok(tx.runner_tokens().await?)
    }

    pub async fn revoke_runner_token(&self, actor: &Actor, id: &str) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        self.permissions.require_manage(tx.as_mut(), actor, None).await?;
        tx.append_audit(&[actor.entry(self.core.now(), "runner-token.revoke", "runner-token", id)]).await?;
        if !tx.revoke_runner_token(id, self.core.now()).await? {
            return Err(Error::not_found(format!("active runner token '{id}'")));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The runner a bearer token belongs to; 401 for unknown or revoked tokens.
    pub(crate) async fn authenticate_runner(&self, tx: &mut dyn Tx, token: &str) -> Result<RunnerToken> {
        let runner = tx
            .runner_token(&keys::token_sha256(token))
            .await?
            .filter(|t| t.revoked_at.is_none())
            .ok_or_else(|| Error::new(ErrorCode::Unauthorized, "unknown or revoked runner token"))?;
        Ok(runner)
    }
}

impl Actions {
    /// An approval notice aimed at an internal IP literal is refused when the action is saved, not
    /// only (silently) each time a run waits; a name is checked when it resolves.
    fn check_notify_url(&self, action: &Action) -> Result<()> {
        let Some(notify) = action.approval().and_then(|rule| rule.notify) else { return Ok(()) };
        self.outbound.check_field(Purpose::ApprovalNotice, &notify.url, "/guardrails/approval/notify/url")
    }
}

/// Where the server's webhook signing key is kept: not a name a secret can be given.
const SIGNING_KEY_NAME: &str = "portolan:webhook-signing-key";

/// A Standard Webhooks key: `whsec_` and 32 random bytes in base64.
fn new_signing_key() -> String {
    use base64::Engine;
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(keys::random_bytes::<32>()))
}
