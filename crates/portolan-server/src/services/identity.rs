//! Accounts, sign-in, sessions and API tokens. Users are `_user` entities; an account adds how one
//! signs in and their role. Every request is authenticated here, and a disabled user's sessions
//! and tokens stop working at once because each request reads the user's status.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use portolan_model::permission::{Role, User};
use portolan_model::{Millis, oauth, system};
use portolan_store::{Account, AccountKind, ApiToken, ClientCredentials, Session, Tx};
use serde::Deserialize;
use serde_json::{Value, json};

use std::sync::Arc;

use super::actor::{Actor, Origin};
use super::audit::Audit;
use super::catalog::{Catalog, WriteMode};
use super::core::Core;
use crate::error::{Error, ErrorCode, Result};
use crate::keys;

/// Longer usernames are refused before anything is looked up or remembered.
const MAX_USERNAME: usize = 256;
/// Passwords shorter than this are refused.
pub const MIN_PASSWORD: usize = 10;
/// Longer ones too: hashing cost must not be the caller's to choose.
const MAX_PASSWORD: usize = 256;
/// How stale a session's or token's last-used time may get before a request refreshes it.
const TOUCH_EVERY_MS: Millis = 60_000;
/// How long an access token traded for client credentials lasts (Port's: three hours).
pub const ACCESS_TOKEN_SECONDS: i64 = 3 * 3_600;
/// How long an assistant's OAuth token lasts; then the assistant asks its user again.
pub const ASSISTANT_TOKEN_SECONDS: i64 = 24 * 3_600;
/// The name access tokens are listed under.
const ACCESS_TOKEN_NAME: &str = "access token (client credentials)";

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Ends after this long without a request.
    pub idle_ms: Millis,
    /// Ends this long after sign-in, however active.
    pub absolute_ms: Millis,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self { idle_ms: 8 * 3_600_000, absolute_ms: 7 * 24 * 3_600_000 }
    }
}

/// A new account, as an admin (or the command line) creates it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAccount {
    /// The `_user` identifier they sign in with (an email address or a short name).
    pub identifier: String,
    pub title: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    /// `admin` or `member` (default).
    pub role: Option<Role>,
    /// Without one the account signs in only by SSO or token.
    pub password: Option<String>,
    /// A service account, for CI and scripts: it uses tokens only.
    #[serde(default)]
    pub service: bool,
}

/// A change to an account by an admin.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountChange {
    pub role: Option<Role>,
    /// `active` or `disabled`: disabling ends every session and token at once.
    pub status: Option<String>,
    pub password: Option<String>,
    /// Users changing their own password give the current one.
    pub current_password: Option<String>,
}

/// A signed-in browser session, as created at sign-in: the cookie value exists only here.
pub struct NewSession {
    pub cookie: String,
    pub session: Session,
    pub user: User,
}

/// Who is signed in and, for a session, the token its form posts must echo.
pub struct SessionActor {
    pub actor: Actor,
    pub session: Session,
}

/// Accounts, sign-in, sessions and API tokens.
#[derive(Clone)]
pub struct Identity {
    core: Core,
    catalog: Catalog,
    audit: Audit,
    throttle: Arc<LoginThrottle>,
    sessions: SessionPolicy,
}

impl Identity {
    pub fn new(core: Core, catalog: Catalog, audit: Audit, sessions: SessionPolicy) -> Self {
        Self { core, catalog, audit, throttle: Arc::default(), sessions }
    }

    /// How long sessions last.
    pub fn session_policy(&self) -> SessionPolicy {
        self.sessions
    }
}

impl Identity {
    /// The user behind an account, or 401 when the account is gone or disabled.
    pub(crate) async fn signed_in_user(&self, tx: &mut dyn Tx, user_id: &str) -> Result<User> {
        let gone = || Error::unauthorized("the account no longer exists or is disabled");
        let account = tx.account(user_id).await?.ok_or_else(gone)?;
        let entity = tx.entity(system::USER, user_id).await?.ok_or_else(gone)?;
        active_user(&account, &entity).ok_or_else(gone)
    }

    /// The actor an account stands for (one not disabled), acting through `origin`.
    pub async fn actor_of(&self, user: &str, origin: Origin) -> Result<Actor> {
        let mut tx = self.core.store().read().await?;
        Ok(Actor::user(self.signed_in_user(tx.as_mut(), user).await?, origin))
    }

    /// The one account whose user has this e-mail address (as its `email`, or as its identifier),
    /// ignoring case; `None` when none has it, or more than one.
    pub async fn account_with_email(&self, email: &str) -> Result<Option<String>> {
        let mut tx = self.core.store().read().await?;
        let accounts: Vec<String> = tx.accounts().await?.into_iter().map(|a| a.user).collect();
        let people = tx.entities(system::USER, &accounts).await?;
        let mut found = people.iter().filter(|person| {
            let own = person.properties.get("email").and_then(Value::as_str);
            own.is_some_and(|own| own.eq_ignore_ascii_case(email)) || person.identifier.eq_ignore_ascii_case(email)
        });
        Ok(match (found.next(), found.next()) {
            (Some(person), None) => Some(person.identifier.clone()),
            _ => None,
        })
    }

    /// The actor an API token (`plt_...`) stands for, at a request for `audience` (`Some("mcp")`
    /// at the MCP server): a token made for one resource is refused everywhere else.
    pub async fn authenticate_token(&self, token: &str, audience: Option<&str>) -> Result<Actor> {
        let now = self.core.now();
        let mut tx = self.core.store().read().await?;
        let Some(record) = tx.api_token(&keys::token_sha256(token)).await?.filter(|t| t.revoked_at.is_none()) else {
            let refused = Error::unauthorized("unknown or revoked API token");
            return Err(self.refuse("auth.failed", "token", "unknown", refused).await);
        };
        if record.expires_at.is_some_and(|at| at <= now) {
            let refused = Error::new(ErrorCode::TokenExpired, "the API token has expired");
            return Err(self.refuse("auth.failed", "token", &record.id, refused).await);
        }
        if let Some(only) = record.audience.as_deref().filter(|&only| Some(only) != audience) {
            let refused = Error::unauthorized(format!("this token was given to an assistant for /{only} only"));
            return Err(self.refuse("auth.failed", "token", &record.id, refused).await);
        }
        let user = match self.signed_in_user(tx.as_mut(), &record.user).await {
            Ok(user) => user,
            Err(refused) => return Err(self.refuse("auth.failed", "token", &record.id, refused).await),
        };
        drop(tx);
        if record.last_used_at.is_none_or(|at| now - at > TOUCH_EVERY_MS) {
            let mut tx = self.core.store().write().await?;
            tx.touch_api_token(&record.id, now).await?;
            tx.commit().await?;
        }
        Ok(Actor::user(user, Origin::Api))
    }

    /// The actor a session cookie stands for; an expired session is removed.
    pub async fn authenticate_session(&self, cookie: &str) -> Result<SessionActor> {
        let now = self.core.now();
        let policy = self.sessions;
        let id = keys::token_sha256(cookie);
        let mut tx = self.core.store().read().await?;
        let session = tx.session(&id).await?.ok_or_else(|| Error::unauthorized("not signed in (no such session)"))?;
        if session.expires_at <= now || session.last_seen_at + policy.idle_ms <= now {
            drop(tx);
            let mut tx = self.core.store().write().await?;
            tx.delete_session(&id).await?;
            let ended =
                Actor::system(session.user.clone(), Origin::Api).entry(now, "session.expire", "session", &session.user);
            tx.append_audit(&[ended]).await?;
            tx.commit().await?;
            return Err(Error::new(ErrorCode::TokenExpired, "the session has expired; sign in again"));
        }
        let user = match self.signed_in_user(tx.as_mut(), &session.user).await {
            Ok(user) => user,
            Err(refused) => return Err(self.refuse("auth.failed", "session", &session.user, refused).await),
        };
        drop(tx);
        if now - session.last_seen_at > TOUCH_EVERY_MS {
            let mut tx = self.core.store().write().await?;
            tx.touch_session(&id, now).await?;
            tx.commit().await?;
        }
        Ok(SessionActor { actor: Actor::user(user, Origin::Ui), session })
    }

    /// Checks a password and opens a session. Failures are throttled per account, per address
    /// and per pair of both.
    pub async fn login(&self, username: &str, password: &str, address: &str) -> Result<NewSession> {
        let now = self.core.now();
        if username.len() > MAX_USERNAME {
            return Err(Error::unauthorized("wrong username or password"));
        }
        // Counted as a failure before the (slow) check, so parallel guesses cannot slip through.
        if let Err(throttled) = self.throttle.begin(username, address, now) {
            return Err(self.refuse("login.throttled", "account", username, throttled).await);
        }
        let account = {
            let mut tx = self.core.store().read().await?;
            tx.account(username).await?
        };
        let hash = account.as_ref().filter(|a| a.kind == AccountKind::Person).and_then(|a| a.password_hash.clone());
        let verified = verify_password(password.to_string(), hash).await;
        let user = match (verified, &account) {
            (true, Some(account)) => {
                let mut tx = self.core.store().read().await?;
                self.signed_in_user(tx.as_mut(), &account.user).await.ok()
            }
            _ => None,
        };
        let Some(user) = user else {
            let refused = Error::unauthorized("wrong username or password");
            return Err(self.refuse("login.failed", "account", username, refused).await);
        };
        self.throttle.succeeded(username, address, now);
        self.open_session(&user, "password").await
    }

    /// Records a refused sign-in or credential (by whoever claimed to be `who`) and returns the
    /// refusal.
    async fn refuse(&self, action: &str, resource_type: &str, who: &str, refusal: Error) -> Error {
        let who: String = who.chars().take(MAX_USERNAME).collect();
        let entry = Actor::system(who.clone(), Origin::Api)
            .entry(self.core.now(), action, resource_type, &who)
            .denied(&refusal.message);
        self.audit.record_apart(entry).await;
        refusal
    }

    /// A new session for a signed-in user.
    pub(crate) async fn open_session(&self, user: &User, method: &str) -> Result<NewSession> {
        let now = self.core.now();
        let cookie = keys::random_token();
        let session = Session {
            id_sha256: keys::token_sha256(&cookie),
            user: user.id.clone(),
            csrf: keys::random_token(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.sessions.absolute_ms,
        };
        let mut tx = self.core.store().write().await?;
        tx.insert_session(&session).await?;
        let entry = Actor::user(user.clone(), Origin::Ui).entry(now, "login", "session", &user.id).changed(
            None,
            Some(json!({"method": method, "expiresAt": portolan_model::format_millis(session.expires_at)})),
        );
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(NewSession { cookie, session, user: user.clone() })
    }

    pub async fn logout(&self, actor: &Actor, session: &Session) -> Result<()> {
        let mut tx = self.core.store().write().await?;
        tx.delete_session(&session.id_sha256).await?;
        tx.append_audit(&[actor.entry(self.core.now(), "logout", "session", &session.user)]).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- accounts ----

    /// Creates a user (their `_user` entity, if missing) and their account. Admins only.
    pub async fn create_account(&self, actor: &Actor, new: NewAccount) -> Result<Account> {
        self.require_manage_portal(actor)?;
        if let Some(password) = &new.password {
            check_password(password)?;
        }
        if new.service && new.password.is_some() {
            return Err(Error::invalid_at("/password", "service accounts sign in with tokens only"));
        }
        let now = self.core.now();
        {
            let mut tx = self.core.store().read().await?;
            if tx.account(&new.identifier).await?.is_some() {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("user '{}' already has an account", new.identifier),
                ));
            }
        }
        let mut properties = serde_json::Map::new();
        if let Some(email) = &new.email {
            properties.insert("email".into(), json!(email));
        }
        properties.insert("status".into(), json!("active"));
        let mut document = json!({"identifier": new.identifier, "properties": properties});
        // Merged onto an existing `_user`: their teams stay unless new ones are given.
        if !new.teams.is_empty() {
            document["team"] = json!(new.teams);
        }
        if let Some(title) = &new.title {
            document["title"] = json!(title);
        }
        let system_actor = Actor { principal: super::Principal::System, ..actor.clone() };
        self.catalog
            .write_entity(
                &system_actor,
                system::USER,
                None,
                document,
                WriteMode::Create { upsert: true, merge: true },
                None,
            )
            .await?;
        let password_hash = match new.password {
            Some(password) => Some(hash_password(password).await?),
            None => None,
        };
        let account = Account {
            user: new.identifier,
            password_hash,
            role: new.role.unwrap_or(Role::Member),
            kind: if new.service { AccountKind::Service } else { AccountKind::Person },
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.core.store().write().await?;
        tx.put_account(&account).await?;
        let entry =
            actor.entry(now, "account.create", "account", &account.user).changed(None, Some(account_view(&account)));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(account)
    }

    pub async fn list_accounts(&self, actor: &Actor) -> Result<Vec<Account>> {
        self.require_manage_portal(actor)?;
        Ok(self.core.store().read().await?.accounts().await?)
    }

    /// Changes a role, status or password. Admins only, except that users may change their own
    /// password. Disabling ends the user's sessions.
    pub async fn change_account(&self, actor: &Actor, user: &str, change: AccountChange) -> Result<Account> {
        let own_password_only = change.role.is_none() && change.status.is_none() && actor.id == user;
        if !own_password_only {
            self.require_manage_portal(actor)?;
        }
        if actor.id == user && (change.role == Some(Role::Member) || change.status.as_deref() == Some("disabled")) {
            return Err(Error::forbidden("admins cannot demote or disable themselves; ask another admin"));
        }
        let current = { self.core.store().read().await?.account(user).await? }
            .ok_or_else(|| Error::not_found(format!("account '{user}'")))?;
        let password_hash = match change.password {
            Some(_) if current.kind == AccountKind::Service => {
                return Err(Error::invalid_at("/password", "service accounts sign in with tokens only"));
            }
            Some(password) => {
                check_password(&password)?;
                if own_password_only {
                    let given = change.current_password.clone().unwrap_or_default();
                    if !verify_password(given, current.password_hash.clone()).await {
                        return Err(Error::forbidden("give your current password to change it"));
                    }
                }
                Some(hash_password(password).await?)
            }
            None => None,
        };
        if let Some(status) = &change.status {
            if status != "active" && status != "disabled" {
                return Err(Error::invalid_at("/status", "status is 'active' or 'disabled'"));
            }
            let system_actor = Actor { principal: super::Principal::System, ..actor.clone() };
            let patch = json!({"properties": {"status": status}});
            self.catalog.write_entity(&system_actor, system::USER, Some(user), patch, WriteMode::Patch, None).await?;
        }
        let mut tx = self.core.store().write().await?;
        let mut account = tx.account(user).await?.ok_or_else(|| Error::not_found(format!("account '{user}'")))?;
        let before = account_view(&account);
        if let Some(role) = change.role {
            account.role = role;
        }
        let password_changed = password_hash.is_some();
        if password_changed {
            account.password_hash = password_hash;
        }
        account.updated_at = self.core.now();
        tx.put_account(&account).await?;
        let mut after = account_view(&account);
        if password_changed {
            after["passwordChanged"] = json!(true);
        }
        let entry =
            actor.entry(account.updated_at, "account.update", "account", user).changed(Some(before), Some(after));
        tx.append_audit(&[entry]).await?;
        // A new password or a disabled account ends every session: whoever held one must prove
        // themselves again.
        if password_changed || change.status.as_deref() == Some("disabled") {
            tx.delete_sessions_of(user).await?;
        }
        tx.commit().await?;
        Ok(account)
    }

    /// On first start with no accounts: an `admin` account, with `password` or a generated one
    /// (returned, to be shown once).
    pub async fn bootstrap_admin(&self, password: Option<String>) -> Result<Option<String>> {
        if !self.core.store().read().await?.accounts().await?.is_empty() {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(keys::random_token);
        let new = NewAccount {
            identifier: "admin".into(),
            title: Some("Administrator".into()),
            role: Some(Role::Admin),
            password: Some(password.clone()),
            ..NewAccount::default()
        };
        self.create_account(&Actor::system("portolan", Origin::Cli), new).await?;
        Ok(generated.then_some(password))
    }

    /// A new token of a service account, created with `role` if missing: for tools (benchmarks,
    /// scripts) that drive the API from the server's side.
    pub async fn service_token(&self, identifier: &str, role: Role) -> Result<String> {
        let system = Actor::system("portolan", Origin::Cli);
        let new =
            NewAccount { identifier: identifier.into(), role: Some(role), service: true, ..NewAccount::default() };
        match self.create_account(&system, new).await {
            Err(err) if err.code != ErrorCode::AlreadyExists => return Err(err),
            _ => {}
        }
        Ok(self.create_api_token(&system, Some(identifier), "tool", None).await?.1)
    }

    fn require_manage_portal(&self, actor: &Actor) -> Result<()> {
        match &actor.principal {
            super::Principal::System => Ok(()),
            super::Principal::User(user) if user.is_admin() => Ok(()),
            _ => Err(Error::forbidden("only an admin may manage accounts")),
        }
    }

    // ---- API tokens ----

    /// A new API token for `owner` (the caller by default; admins may name any account, such as a
    /// service account). The token acts with its owner's rights, as they are at each use.
    pub async fn create_api_token(
        &self,
        actor: &Actor,
        owner: Option<&str>,
        name: &str,
        expires_in_days: Option<u32>,
    ) -> Result<(ApiToken, String)> {
        let owner = owner.unwrap_or(&actor.id).to_string();
        if owner != actor.id {
            self.require_manage_portal(actor)?;
        }
        if name.trim().is_empty() || name.len() > 200 {
            return Err(Error::invalid_at("/name", "give the token a name of 1 to 200 characters"));
        }
        if expires_in_days.is_some_and(|d| d == 0 || d > 3650) {
            return Err(Error::invalid_at("/expiresInDays", "a token lasts 1 to 3650 days"));
        }
        let now = self.core.now();
        let (token, hash) = keys::new_token();
        let record = ApiToken {
            id: format!("tok_{}", uuid::Uuid::new_v4().simple()),
            user: owner.clone(),
            name: name.to_string(),
            token_sha256: hash,
            created_at: now,
            created_by: actor.id.clone(),
            expires_at: expires_in_days.map(|d| now + i64::from(d) * 86_400_000),
            last_used_at: None,
            revoked_at: None,
            audience: None,
        };
        let mut tx = self.core.store().write().await?;
        if tx.account(&owner).await?.is_none() {
            return Err(Error::invalid_at("/user", format!("'{owner}' has no account")));
        }
        tx.insert_api_token(&record).await?;
        let entry = actor.entry(now, "token.create", "token", &record.id).changed(
            None,
            Some(json!({"user": record.user, "name": record.name, "expiresAt": record.expires_at.map(portolan_model::format_millis)})),
        );
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok((record, token))
    }

    /// The caller's tokens; for admins, everyone's.
    pub async fn list_api_tokens(&self, actor: &Actor) -> Result<Vec<ApiToken>> {
        let only = if self.require_manage_portal(actor).is_ok() { None } else { Some(actor.id.as_str()) };
        Ok(self.core.store().read().await?.api_tokens(only).await?)
    }

    /// Revokes one of the caller's tokens (admins: anyone's). Another's token answers 404.
    pub async fn revoke_api_token(&self, actor: &Actor, id: &str) -> Result<()> {
        let admin = self.require_manage_portal(actor).is_ok();
        let mut tx = self.core.store().write().await?;
        let owned = tx.api_tokens(if admin { None } else { Some(actor.id.as_str()) }).await?.iter().any(|t| t.id == id);
        if !owned || !tx.revoke_api_token(id, self.core.now()).await? {
            return Err(Error::not_found(format!("active API token '{id}'")));
        }
        tx.append_audit(&[actor.entry(self.core.now(), "token.revoke", "token", id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- client credentials ----

    /// New client credentials for `user` (the caller, or anyone for an admin): the client id is
    /// kept across rotations, the secret is new and returned only here.
    pub async fn rotate_client_credentials(&self, actor: &Actor, user: &str) -> Result<(ClientCredentials, String)> {
        if user != actor.id {
            self.require_manage_portal(actor)?;
        }
        let now = self.core.now();
        let secret = format!("pcs_{}", keys::random_token());
        let mut tx = self.core.store().write().await?;
        if tx.account(user).await?.is_none() {
            return Err(Error::not_found(format!("account '{user}'")));
        }
        let client_id = match tx.client_credentials_of(Some(user)).await?.pop() {
            Some(existing) => existing.client_id,
            None => format!("pci_{}", uuid::Uuid::new_v4().simple()),
        };
        let credentials = ClientCredentials {
            user: user.to_string(),
            client_id,
            secret_sha256: keys::token_sha256(&secret),
            created_at: now,
            created_by: actor.id.clone(),
        };
        tx.put_client_credentials(&credentials).await?;
        let entry = actor
            .entry(now, "credentials.rotate", "account", user)
            .changed(None, Some(json!({"clientId": credentials.client_id})));
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok((credentials, secret))
    }

    /// The client credentials of `user`, without the secret.
    pub async fn client_credentials(&self, actor: &Actor, user: &str) -> Result<ClientCredentials> {
        if user != actor.id {
            self.require_manage_portal(actor)?;
        }
        let mut tx = self.core.store().read().await?;
        tx.client_credentials_of(Some(user))
            .await?
            .pop()
            .ok_or_else(|| Error::not_found(format!("client credentials of '{user}'")))
    }

    /// Deletes access tokens traded for client credentials a day after they expired (until then
    /// they are refused as expired, not as unknown); how many.
    pub async fn delete_expired_access_tokens(&self) -> Result<u64> {
        let mut tx = self.core.store().write().await?;
        let deleted = tx.delete_expired_api_tokens(ACCESS_TOKEN_NAME, self.core.now() - 86_400_000).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Deletes `user`'s client credentials; access tokens already traded run out by themselves.
    pub async fn delete_client_credentials(&self, actor: &Actor, user: &str) -> Result<()> {
        if user != actor.id {
            self.require_manage_portal(actor)?;
        }
        let mut tx = self.core.store().write().await?;
        if !tx.delete_client_credentials(user).await? {
            return Err(Error::not_found(format!("client credentials of '{user}'")));
        }
        tx.append_audit(&[actor.entry(self.core.now(), "credentials.delete", "account", user)]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Trades client credentials for an access token lasting [`ACCESS_TOKEN_SECONDS`]. Wrong
    /// secrets are throttled as failed sign-ins are, per client id and address.
    pub async fn access_token(&self, client_id: &str, secret: &str, address: &str) -> Result<String> {
        let now = self.core.now();
        if client_id.len() > MAX_USERNAME {
            return Err(Error::unauthorized("wrong client id or secret"));
        }
        if let Err(throttled) = self.throttle.begin(client_id, address, now) {
            return Err(self.refuse("login.throttled", "client", client_id, throttled).await);
        }
        let hash = keys::token_sha256(secret);
        let checked = {
            let mut tx = self.core.store().read().await?;
            match tx.client_credentials(client_id).await?.filter(|c| keys::same(&c.secret_sha256, &hash)) {
                Some(credentials) => self.signed_in_user(tx.as_mut(), &credentials.user).await.map(|_| credentials),
                None => Err(Error::unauthorized("wrong client id or secret")),
            }
        };
        let credentials = match checked {
            Ok(credentials) => credentials,
            Err(refused) => return Err(self.refuse("login.failed", "client", client_id, refused).await),
        };
        self.throttle.succeeded(client_id, address, now);
        let (token, token_sha256) = keys::new_token();
        let record = ApiToken {
            id: format!("tok_{}", uuid::Uuid::new_v4().simple()),
            user: credentials.user.clone(),
            name: ACCESS_TOKEN_NAME.into(),
            token_sha256,
            created_at: now,
            created_by: credentials.user.clone(),
            expires_at: Some(now + ACCESS_TOKEN_SECONDS * 1000),
            last_used_at: None,
            revoked_at: None,
            audience: None,
        };
        let mut tx = self.core.store().write().await?;
        tx.insert_api_token(&record).await?;
        let actor = Actor::system(credentials.user.clone(), Origin::Api);
        let entry = actor.entry(now, "login", "token", &record.id).changed(
            None,
            Some(json!({"method": "client credentials", "clientId": client_id,
                "expiresAt": record.expires_at.map(portolan_model::format_millis)})),
        );
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(token)
    }
}

impl Identity {
    /// Issues the token an authorization code was traded for (the code already checked): good
    /// only at the MCP server, for [`ASSISTANT_TOKEN_SECONDS`], listed with the user's tokens under
    /// the assistant's name, revocable there. Its id comes from the code, so a code exchanged
    /// twice is refused, and the token the first exchange gave is revoked (RFC 6749 §10.5).
    pub async fn assistant_token(&self, code: &oauth::Code) -> Result<Option<(String, i64)>> {
        let now = self.core.now();
        let id = format!("tok_oauth_{}", code.nonce);
        let (token, token_sha256) = keys::new_token();
        let record = ApiToken {
            id: id.clone(),
            user: code.user.clone(),
            name: format!("assistant: {}", code.client_name),
            token_sha256,
            created_at: now,
            created_by: code.user.clone(),
            expires_at: Some(now + ASSISTANT_TOKEN_SECONDS * 1000),
            last_used_at: None,
            revoked_at: None,
            audience: Some(oauth::SCOPE.into()),
        };
        let actor = Actor::system(code.user.clone(), Origin::Mcp);
        let mut tx = self.core.store().write().await?;
        self.signed_in_user(tx.as_mut(), &code.user).await?;
        match tx.insert_api_token(&record).await {
            Ok(()) => {}
            Err(portolan_store::StoreError::Conflict(_)) => {
                drop(tx);
                let mut tx = self.core.store().write().await?;
                tx.revoke_api_token(&id, now).await?;
                let entry = actor
                    .entry(now, "token.revoke", "token", &id)
                    .changed(None, Some(json!({"reason": "its authorization code was used twice"})));
                tx.append_audit(&[entry]).await?;
                tx.commit().await?;
                return Ok(None);
            }
            Err(other) => return Err(other.into()),
        }
        let entry = actor.entry(now, "login", "token", &id).changed(
            None,
            Some(json!({"method": "oauth", "client": code.client_name, "resource": code.resource,
                "expiresAt": record.expires_at.map(portolan_model::format_millis)})),
        );
        tx.append_audit(&[entry]).await?;
        tx.commit().await?;
        Ok(Some((token, ASSISTANT_TOKEN_SECONDS)))
    }
}

/// An account as the audit log shows it: never its password hash.
fn account_view(account: &Account) -> Value {
    json!({"role": account.role.as_str(), "kind": account.kind.as_str(), "hasPassword": account.password_hash.is_some()})
}

fn check_password(password: &str) -> Result<()> {
    let length = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(Error::invalid_at(
            "/password",
            format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        ));
    }
    Ok(())
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), off the async threads.
async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&keys::random_bytes::<16>())
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))
    })
    .await
    .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?
}

/// Whether `password` matches `hash`. Without a hash the work is done anyway, so that a
/// response's timing does not tell which usernames exist.
async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let decoy = DECOY.get_or_init(|| {
            let salt = SaltString::encode_b64(&[7u8; 16]).expect("a fixed 16-byte salt encodes");
            Argon2::default().hash_password(b"decoy password", &salt).map(|h| h.to_string()).unwrap_or_default()
        });
        let stored = hash.as_deref().unwrap_or(decoy);
        let matches = PasswordHash::new(stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        matches && hash.is_some()
    })
    .await
    .unwrap_or(false)
}

/// Failed sign-ins, remembered in this process: a pair (account, address) is slowed after a few
/// failures, an address after many; an account under attack from many addresses only tightens
/// the pair limit, so its owner, from an address that has not failed, still gets in.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Millis,
}

/// Failures counted within this window.
const THROTTLE_WINDOW_MS: Millis = 15 * 60_000;
const PAIR_FREE: u32 = 5;
const ADDRESS_FREE: u32 = 30;
/// Failures across all addresses after which each address gets one free try per account.
const ACCOUNT_UNDER_ATTACK: u32 = 50;
const MAX_DELAY_MS: Millis = 15 * 60_000;
const MAX_REMEMBERED: usize = 100_000;

impl LoginThrottle {
    fn get(map: &HashMap<String, Failures>, key: &str, now: Millis) -> u32 {
        map.get(key).filter(|f| now - f.last < THROTTLE_WINDOW_MS).map_or(0, |f| f.count)
    }

    /// How long the caller must wait when over a limit: doubling per failure past the free ones.
    fn delay(map: &HashMap<String, Failures>, key: &str, free: u32, now: Millis) -> Option<Millis> {
        let failures = map.get(key).filter(|f| now - f.last < THROTTLE_WINDOW_MS)?;
        if failures.count < free {
            return None;
        }
        let delay = (1_000i64 << (failures.count - free).min(20)).min(MAX_DELAY_MS);
        let until = failures.last + delay;
        (until > now).then_some(until - now)
    }

    /// Admits an attempt (counting it as a failure until [`LoginThrottle::succeeded`] says
    /// otherwise), or says how long to wait.
    pub fn begin(&self, account: &str, address: &str, now: Millis) -> Result<()> {
        self.check(account, address, now)?;
        self.failed(account, address, now);
        Ok(())
    }

    fn check(&self, account: &str, address: &str, now: Millis) -> Result<()> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let pair_free =
            if Self::get(&map, &format!("a:{account}"), now) >= ACCOUNT_UNDER_ATTACK { 1 } else { PAIR_FREE };
        let wait = [
            Self::delay(&map, &format!("p:{account}\n{address}"), pair_free, now),
            Self::delay(&map, &format!("i:{address}"), ADDRESS_FREE, now),
        ]
        .into_iter()
        .flatten()
        .max();
        match wait {
            Some(ms) => {
                Err(Error::too_many("too many failed sign-ins; wait before trying again", (ms as u64).div_ceil(1000)))
            }
            None => Ok(()),
        }
    }

    fn failed(&self, account: &str, address: &str, now: Millis) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_REMEMBERED {
            map.retain(|_, f| now - f.last < THROTTLE_WINDOW_MS);
        }
        for key in [format!("a:{account}"), format!("p:{account}\n{address}"), format!("i:{address}")] {
            let count = Self::get(&map, &key, now);
            map.insert(key, Failures { count: count + 1, last: now });
        }
    }

    /// Takes back the attempt [`LoginThrottle::begin`] counted, and forgives the pair.
    pub fn succeeded(&self, account: &str, address: &str, now: Millis) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("p:{account}\n{address}"));
        for key in [format!("a:{account}"), format!("i:{address}")] {
            if let Some(f) = map.get_mut(&key) {
                f.count = f.count.saturating_sub(1);
                f.last = f.last.min(now);
            }
        }
    }
}

/// An account's person as permissions judge them (role and teams), unless they are disabled.
pub(crate) fn active_user(account: &Account, person: &portolan_model::Entity) -> Option<User> {
    let disabled = person.properties.get("status").and_then(Value::as_str) == Some("disabled");
    (!disabled).then(|| User { id: account.user.clone(), role: account.role, teams: person.team.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_slowed_after_five_failures_and_others_are_not() {
        let throttle = LoginThrottle::default();
        let now = 1_000_000;
        for _ in 0..PAIR_FREE {
            assert!(throttle.check("alice", "10.0.0.1", now).is_ok());
            throttle.failed("alice", "10.0.0.1", now);
        }
        let refused = throttle.check("alice", "10.0.0.1", now).expect_err("throttled");
        assert_eq!(refused.code, ErrorCode::TooManyRequests);
        assert_eq!(refused.retry_after, Some(1));
        assert!(throttle.check("alice", "10.0.0.2", now).is_ok(), "alice from elsewhere still gets in");
        assert!(throttle.check("bob", "10.0.0.1", now).is_ok(), "another account from the address too");
        assert!(throttle.check("alice", "10.0.0.1", now + 1_000).is_ok(), "the wait ends");
    }

    #[test]
    fn an_account_under_attack_still_admits_a_fresh_address() {
        let throttle = LoginThrottle::default();
        let now = 1_000_000;
        for i in 0..ACCOUNT_UNDER_ATTACK {
            throttle.failed("alice", &format!("10.1.{}.{}", i / 250, i % 250), now);
        }
        assert!(throttle.check("alice", "192.168.0.9", now).is_ok());
        assert!(throttle.check("alice", "10.1.0.0", now).is_err(), "an address that failed waits");
    }
}
