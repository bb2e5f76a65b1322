//! What a transaction can do, one trait per concern. [`Tx`] combines them: a `Box<dyn Tx>` reaches
//! every method; code generic over one concern names its trait (all are in `portolan_store::prelude`).

use std::collections::{HashMap, HashSet};

use portolan_model::audit::{AuditEntry, AuditRecord, StoredRecord};
use portolan_model::manifest::ObjectKey;
use portolan_model::run::{Run, RunLog};
use portolan_model::{Entity, EntityRef, Millis};
use serde_json::{Map, Value};

use crate::query_sql::{AggregatePlan, AggregateResult, SearchPlan};
use crate::{
    Account, ActionRecord, ApiToken, AppliedObject, AuditFilter, BlueprintRecord, ChangeEvent, ClientCredentials,
    EntityWrite, Job, NewJob, NewRunLog, Referrer, Result, RunFilter, RunnerToken, ScorecardRecord, SecretMeta,
    Session, SourceSummary,
};

/// One transaction. Dropping it without [`Tx::commit`] rolls it back.
#[async_trait::async_trait]
pub trait Tx:
    BlueprintStore
    + EntityStore
    + ScorecardStore
    + JobStore
    + SearchStore
    + ActionStore
    + RunStore
    + SecretStore
    + IdentityStore
    + PermissionStore
    + AuditStore
    + SourceStore
    + LocationStore
    + IntegrationStore
    + KpiStore
    + NotificationStore
    + Send
{
    /// Announces a change to every listener of [`crate::Store::changes`], once (and if) this
    /// transaction commits.
    async fn publish(&mut self, event: &ChangeEvent) -> Result<()>;

    async fn commit(self: Box<Self>) -> Result<()>;
}

#[async_trait::async_trait]
pub trait BlueprintStore: Send {
    /// In a write transaction, the blueprint (and, for `entity`, `entities` and `existing`, the
    /// entities) read stay as read until commit: other writers may read them but not change or
    /// delete them.
    async fn blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>>;
    /// Reads a blueprint for changing it: other write transactions that read it wait until this
    /// one ends.
    async fn lock_blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>>;
    /// Inserts a new blueprint; [`crate::StoreError::Conflict`] if one with its identifier exists.
    async fn insert_blueprint(&mut self, record: &BlueprintRecord) -> Result<()>;
    /// All blueprints, ordered by identifier.
    async fn blueprints(&mut self) -> Result<Vec<BlueprintRecord>>;
    /// Inserts or replaces a blueprint.
    async fn put_blueprint(&mut self, record: &BlueprintRecord) -> Result<()>;
    /// Deletes a blueprint that has no entities; false when it did not exist.
    async fn delete_blueprint(&mut self, identifier: &str) -> Result<bool>;
}

#[async_trait::async_trait]
pub trait EntityStore: Send {
    /// Reads an entity for changing or deleting it (see [`BlueprintStore::lock_blueprint`]).
    async fn lock_entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>>;
    async fn entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>>;
    /// The entities of `blueprint` among `identifiers` (any order; absent ones are left out).
    async fn entities(&mut self, blueprint: &str, identifiers: &[String]) -> Result<Vec<Entity>>;
    /// Which of `identifiers` exist in `blueprint`.
    async fn existing(&mut self, blueprint: &str, identifiers: &[String]) -> Result<HashSet<String>>;
    /// Inserts or replaces entities with their references, guarded by version: an entity whose
    /// `version` is 1 must not exist yet, any other must be stored at `version - 1`. If a guard
    /// fails (a concurrent writer got there first) the result is [`crate::StoreError::Conflict`]
    /// and the transaction must be dropped, not committed. Identifiers must be unique within one
    /// call.
    async fn put_entities(&mut self, writes: &[EntityWrite]) -> Result<()>;
    /// Deletes an entity and its outgoing references; false when it did not exist.
    async fn delete_entity(&mut self, blueprint: &str, identifier: &str) -> Result<bool>;
    /// Deletes every entity of a blueprint; returns how many.
    async fn delete_entities_of(&mut self, blueprint: &str) -> Result<u64>;
    /// Entities of `blueprint` ordered by identifier, starting after `after`.
    async fn list_entities(&mut self, blueprint: &str, after: Option<&str>, limit: u32) -> Result<Vec<Entity>>;
    async fn count_entities(&mut self, blueprint: &str) -> Result<u64>;
    /// Entities that point at `target`, at most `limit`, ordered by blueprint and identifier.
    async fn referrers(&mut self, target: &EntityRef, limit: u32) -> Result<Vec<Referrer>>;
}

/// Scorecards, and the values computed for entities (properties, scorecard results, diagnostics).
#[async_trait::async_trait]
pub trait ScorecardStore: Send {
    /// The scorecards of a blueprint, ordered by identifier.
    async fn scorecards(&mut self, blueprint: &str) -> Result<Vec<ScorecardRecord>>;
    /// Inserts or replaces a scorecard.
    async fn put_scorecard(&mut self, record: &ScorecardRecord) -> Result<()>;
    /// Deletes a scorecard; false when it did not exist.
    async fn delete_scorecard(&mut self, blueprint: &str, identifier: &str) -> Result<bool>;
    /// Replaces the stored scorecard results of entities of `blueprint` (identifier, results).
    async fn put_scorecard_results(&mut self, blueprint: &str, results: &[(String, Map<String, Value>)]) -> Result<()>;
    /// Replaces the computed properties, scorecard results and diagnostics of an entity, if it
    /// is still at `version`; false when a write got there first.
    async fn put_computed(
        &mut self,
        entity: &EntityRef,
        version: i64,
        properties: &Map<String, Value>,
        scorecards: &Map<String, Value>,
        diagnostics: &Map<String, Value>,
    ) -> Result<bool>;
}

/// Background jobs, singleton work and timer expiries.
#[async_trait::async_trait]
pub trait JobStore: Send {
    /// Enqueues jobs; a job whose key is already waiting is dropped (the waiting one covers it).
    async fn enqueue_jobs(&mut self, jobs: &[NewJob]) -> Result<()>;
    /// Claims up to `limit` due jobs whose lease is free or expired, leasing them to `owner`
    /// until `now + lease_ms`. Commit before working on them, so others see the lease.
    async fn claim_jobs(&mut self, owner: &str, now: Millis, lease_ms: i64, limit: u32) -> Result<Vec<Job>>;
    /// Removes a finished job, if `owner` still holds its lease; false when the lease was lost
    /// (the transaction must then be dropped: another worker owns the job).
    async fn complete_job(&mut self, id: i64, owner: &str) -> Result<bool>;
    /// Gives a failed job back, to be retried at `retry_at`.
    async fn release_job(&mut self, id: i64, owner: &str, retry_at: Millis) -> Result<()>;
    /// Jobs waiting or claimed.
    async fn count_jobs(&mut self) -> Result<u64>;

    /// Takes or renews the lease of singleton work `name` for `owner` until `now + lease_ms`, if
    /// it is free, expired or already ours; returns the work's saved state when held.
    async fn acquire_singleton(&mut self, name: &str, owner: &str, now: Millis, lease_ms: i64)
    -> Result<Option<Value>>;
    /// Saves the progress of singleton work, if `owner` still holds it.
    async fn save_singleton(&mut self, name: &str, owner: &str, state: &Value) -> Result<bool>;
    /// The current holder of singleton work and its lease end.
    async fn singleton_owner(&mut self, name: &str) -> Result<Option<(String, Millis)>>;
    /// Records timer expiries (blueprint, identifier, property, expiry); returns which were new.
    async fn record_expiries(&mut self, expiries: &[(String, String, String, Millis)]) -> Result<Vec<bool>>;
}

#[async_trait::async_trait]
pub trait SearchStore: Send {
    /// Entities a query selects, in the plan's order, at most `plan.limit`.
    async fn search(&mut self, plan: &SearchPlan) -> Result<Vec<Entity>>;
    /// A count, a statistic or counts per value over the entities a query selects.
    async fn aggregate(&mut self, plan: &AggregatePlan) -> Result<AggregateResult>;
}

#[async_trait::async_trait]
pub trait ActionStore: Send {
    /// All actions, ordered by identifier.
    async fn actions(&mut self) -> Result<Vec<ActionRecord>>;
    async fn action(&mut self, identifier: &str) -> Result<Option<ActionRecord>>;
    /// Inserts or replaces an action; with `insert_only`, [`crate::StoreError::Conflict`] if it
    /// exists.
    async fn put_action(&mut self, record: &ActionRecord, insert_only: bool) -> Result<()>;
    /// Deletes an action; false when it did not exist.
    async fn delete_action(&mut self, identifier: &str) -> Result<bool>;
}

/// Runs, their leases and logs, and the entities they affected.
#[async_trait::async_trait]
pub trait RunStore: Send {
    /// Inserts a new run (with the labels a runner needs, for runner runs); returns its `seq`.
    async fn insert_run(&mut self, run: &Run, labels: Option<&[String]>) -> Result<i64>;
    /// A run; with `lock`, held against other writers until this transaction ends.
    async fn run(&mut self, id: &str, lock: bool) -> Result<Option<Run>>;
    /// Stores a run's new state; a run no longer in progress loses its lease.
    async fn update_run(&mut self, run: &Run) -> Result<()>;
    /// Runs matching `filter`, newest first, with their `seq` (the cursor).
    async fn list_runs(&mut self, filter: &RunFilter, limit: u32) -> Result<Vec<(i64, Run)>>;
    /// The oldest queued runner run that needs no label outside `labels`; in a write transaction
    /// locked for the caller (skipping any run another claimer holds), in a read one only seen.
    async fn claimable_run(&mut self, labels: &[String]) -> Result<Option<Run>>;
    /// Runs in progress whose lease ran out before `now`, locked for the caller.
    async fn lost_runs(&mut self, now: Millis, limit: u32) -> Result<Vec<Run>>;
    /// Leases a run to `owner` until `until`; with `only_if_owner`, renews only the owner's lease of a
    /// run in progress (false otherwise).
    async fn lease_run(&mut self, id: &str, owner: &str, until: Millis, only_if_owner: bool) -> Result<bool>;
    /// Who holds a run's lease, and until when.
    async fn run_lease(&mut self, id: &str) -> Result<Option<(String, Millis)>>;
    /// Appends lines to a run's log.
    async fn append_run_logs(&mut self, run_id: &str, logs: &[NewRunLog]) -> Result<()>;
    /// A run's log lines after `after` (a line's `seq`), oldest first.
    async fn run_logs(&mut self, run_id: &str, after: i64, limit: u32) -> Result<Vec<RunLog>>;
    /// Records that a run created, updated or deleted entities.
    async fn link_run_entities(&mut self, run_id: &str, changes: &[(EntityRef, &str)], at: Millis) -> Result<()>;
    /// The entities a run affected, and how.
    async fn run_entities(&mut self, run_id: &str) -> Result<Vec<(EntityRef, String)>>;
    /// The runs that affected an entity (run id, how), latest first.
    async fn entity_runs(&mut self, entity: &EntityRef, limit: u32) -> Result<Vec<(String, String)>>;
}

/// Secrets, runner tokens and settings.
#[async_trait::async_trait]
pub trait SecretStore: Send {
    /// Stores a sealed secret value; true when the name is new.
    async fn put_secret(&mut self, name: &str, sealed: &[u8], at: Millis, by: &str) -> Result<bool>;
    /// A sealed secret value.
    async fn secret(&mut self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Every secret's name and history, ordered by name.
    async fn secrets(&mut self) -> Result<Vec<SecretMeta>>;
    async fn delete_secret(&mut self, name: &str) -> Result<bool>;
    async fn insert_runner_token(&mut self, token: &RunnerToken) -> Result<()>;
    /// The runner token with this SHA-256.
    async fn runner_token(&mut self, token_sha256: &str) -> Result<Option<RunnerToken>>;
    async fn runner_tokens(&mut self) -> Result<Vec<RunnerToken>>;
    /// Revokes a runner token; false when it does not exist or is revoked already.
    async fn revoke_runner_token(&mut self, id: &str, at: Millis) -> Result<bool>;
    async fn touch_runner_token(&mut self, id: &str, at: Millis) -> Result<()>;
    async fn setting(&mut self, name: &str) -> Result<Option<String>>;
    /// A setting's value, storing `value` first if it has none.
    async fn setting_or_insert(&mut self, name: &str, value: &str) -> Result<String>;
    /// Stores a setting's value, replacing what it had.
    async fn put_setting(&mut self, name: &str, value: &str) -> Result<()>;
}

/// Accounts, sessions and API tokens.
#[async_trait::async_trait]
pub trait IdentityStore: Send {
    /// The sign-in record of a `_user`.
    async fn account(&mut self, user: &str) -> Result<Option<Account>>;
    async fn accounts(&mut self) -> Result<Vec<Account>>;
    /// Creates or replaces an account.
    async fn put_account(&mut self, account: &Account) -> Result<()>;
    async fn insert_session(&mut self, session: &Session) -> Result<()>;
    /// The session whose cookie value has this SHA-256.
    async fn session(&mut self, id_sha256: &str) -> Result<Option<Session>>;
    async fn touch_session(&mut self, id_sha256: &str, at: Millis) -> Result<()>;
    async fn delete_session(&mut self, id_sha256: &str) -> Result<bool>;
    /// Ends every session of a user; how many there were.
    async fn delete_sessions_of(&mut self, user: &str) -> Result<u64>;
    async fn insert_api_token(&mut self, token: &ApiToken) -> Result<()>;
    /// The API token with this SHA-256.
    async fn api_token(&mut self, token_sha256: &str) -> Result<Option<ApiToken>>;
    /// Every API token, or only those of `user`.
    async fn api_tokens(&mut self, user: Option<&str>) -> Result<Vec<ApiToken>>;
    /// Revokes an API token; false when it does not exist or is revoked already.
    async fn revoke_api_token(&mut self, id: &str, at: Millis) -> Result<bool>;
    async fn touch_api_token(&mut self, id: &str, at: Millis) -> Result<()>;
    /// Deletes the API tokens called `name` that expired before `before`; how many.
    async fn delete_expired_api_tokens(&mut self, name: &str, before: Millis) -> Result<u64>;
    /// Creates or replaces an account's client credentials.
    async fn put_client_credentials(&mut self, credentials: &ClientCredentials) -> Result<()>;
    /// The credentials with this client id.
    async fn client_credentials(&mut self, client_id: &str) -> Result<Option<ClientCredentials>>;
    /// Every account's credentials, or only `user`'s.
    async fn client_credentials_of(&mut self, user: Option<&str>) -> Result<Vec<ClientCredentials>>;
    /// Deletes a user's credentials; false when it had none.
    async fn delete_client_credentials(&mut self, user: &str) -> Result<bool>;
}

#[async_trait::async_trait]
pub trait PermissionStore: Send {
    /// The permissions document of a resource (`blueprint:<id>`, `action:<id>`).
    async fn permissions(&mut self, resource: &str) -> Result<Option<Value>>;
    /// Stores a permissions document, or with `None` removes it.
    async fn put_permissions(&mut self, resource: &str, document: Option<&Value>, at: Millis, by: &str) -> Result<()>;
}

#[async_trait::async_trait]
pub trait AuditStore: Send {
    /// Appends entries to the audit log's chain, in order, in this transaction.
    async fn append_audit(&mut self, entries: &[AuditEntry]) -> Result<()>;
    /// The newest audit record's number and hash (0 and the genesis hash when empty).
    async fn audit_head(&mut self) -> Result<(i64, String)>;
    /// Audit records matching a filter, newest first.
    async fn audit_records(&mut self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>>;
    /// For each entity (of `blueprint`, when given) with a successful record after `at`, its newest
    /// successful record up to `at`, if it has one, oldest first. Every write of an entity is
    /// recorded and moves its `updatedAt`, so these and the entities not updated since `at` make
    /// up the catalog as it was then.
    async fn entity_records_at(&mut self, blueprint: Option<&str>, at: i64) -> Result<Vec<AuditRecord>>;
    /// Audit records after `after` as stored, oldest first.
    async fn audit_chain(&mut self, after: i64, limit: u32) -> Result<Vec<StoredRecord>>;
}

/// What catalog-as-code sources (`portolan apply`, locations) applied: each object they wrote,
/// under one source at a time.
#[async_trait::async_trait]
pub trait SourceStore: Send {
    /// Every applied object, or those of one source.
    async fn applied_objects(&mut self, source: Option<&str>) -> Result<HashMap<ObjectKey, AppliedObject>>;
    async fn applied_object(&mut self, key: &ObjectKey) -> Result<Option<AppliedObject>>;
    /// Records objects (with the file that declares each) under `source`, taking them over from
    /// any other source.
    async fn record_applied(&mut self, source: &str, objects: &[(ObjectKey, String)], at: Millis) -> Result<()>;
    async fn forget_applied(&mut self, keys: &[ObjectKey]) -> Result<()>;
    /// Each source with how many objects it holds and when it last applied, ordered by name.
    async fn sources(&mut self) -> Result<Vec<SourceSummary>>;
}

/// Locations: the repositories and folders whose manifests are synced.
#[async_trait::async_trait]
pub trait LocationStore: Send {
    /// Stores a location (new, or with a new status).
    async fn put_location(&mut self, location: &portolan_model::manifest::location::Location) -> Result<()>;
    async fn location(&mut self, id: &str) -> Result<Option<portolan_model::manifest::location::Location>>;
    /// Every location, oldest first.
    async fn locations(&mut self) -> Result<Vec<portolan_model::manifest::location::Location>>;
    async fn delete_location(&mut self, id: &str) -> Result<bool>;
    /// The location whose sync is most overdue, its next sync moved one interval on; none when
    /// none is due (or another claimer took it first).
    async fn claim_due_location(&mut self, now: Millis)
    -> Result<Option<portolan_model::manifest::location::Location>>;
}

/// Integrations and their event logs.
#[async_trait::async_trait]
pub trait IntegrationStore: Send {
    /// Stores an integration (new, or changed); `key_hash`, when given, becomes its ingest key's.
    async fn put_integration(
        &mut self,
        integration: &portolan_model::integration::Integration,
        key_hash: Option<&str>,
    ) -> Result<()>;
    async fn integration(&mut self, id: &str) -> Result<Option<portolan_model::integration::Integration>>;
    /// The hash of an integration's ingest key (a webhook's).
    async fn integration_key(&mut self, id: &str) -> Result<Option<String>>;
    /// The integration whose ingest key hashes to `key_hash`.
    async fn integration_by_key(&mut self, key_hash: &str) -> Result<Option<portolan_model::integration::Integration>>;
    /// Every integration, oldest first.
    async fn integrations(&mut self) -> Result<Vec<portolan_model::integration::Integration>>;
    /// Deletes an integration and its events.
    async fn delete_integration(&mut self, id: &str) -> Result<bool>;
    /// The REST integration whose pull is most overdue, its next pull moved one interval on.
    async fn claim_due_integration(&mut self, now: Millis) -> Result<Option<portolan_model::integration::Integration>>;
    /// Stores a new event; false (and nothing stored) when its integration already holds an event
    /// with its request identifier.
    async fn insert_event(&mut self, event: &portolan_model::integration::IntegrationEvent) -> Result<bool>;
    /// Stores an event's new state and items.
    async fn update_event(&mut self, event: &portolan_model::integration::IntegrationEvent) -> Result<()>;
    async fn event(
        &mut self,
        integration: &str,
        id: &str,
    ) -> Result<Option<portolan_model::integration::IntegrationEvent>>;
    /// An integration's events, newest first, received before `before` (a time and an id).
    async fn events(
        &mut self,
        integration: &str,
        before: Option<(Millis, String)>,
        limit: u32,
    ) -> Result<Vec<portolan_model::integration::IntegrationEvent>>;
    /// Deletes an integration's events received before a time; how many.
    async fn delete_events_before(&mut self, integration: &str, before: Millis) -> Result<u64>;
    /// Stores an installation (an integration running elsewhere), new or changed.
    async fn put_installation(&mut self, installation: &portolan_model::integration::Installation) -> Result<()>;
    async fn installation(&mut self, id: &str) -> Result<Option<portolan_model::integration::Installation>>;
    /// Every installation, oldest first.
    async fn installations(&mut self) -> Result<Vec<portolan_model::integration::Installation>>;
    async fn delete_installation(&mut self, id: &str) -> Result<bool>;
}

/// One value of a KPI time series: `metric` (`scorecard/<blueprint>/<scorecard>`, ...), `team`
/// (`*` for all teams, empty for entities without one), `label` (a level, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct KpiSample {
    pub metric: String,
    pub team: String,
    pub label: String,
    pub value: f64,
}

/// KPI time series: one value per series and day.
#[async_trait::async_trait]
pub trait KpiStore: Send {
    /// Stores the values of `day` (its first millisecond), replacing what that day had.
    async fn put_samples(&mut self, day: Millis, samples: &[KpiSample]) -> Result<()>;
    /// A metric's (every metric's, with `None`) values of the days in `[from, to)`, by metric,
    /// day, team and label.
    async fn samples(&mut self, metric: Option<&str>, from: Millis, to: Millis) -> Result<Vec<(Millis, KpiSample)>>;
    /// Removes the values of days before `day` (retention); how many.
    async fn delete_samples_before(&mut self, day: Millis) -> Result<u64>;
    /// Stores a KPI document (`kind`: `initiative`, `dashboard`), replacing the one of the same
    /// kind and identifier.
    async fn put_kpi_document(&mut self, kind: &str, identifier: &str, document: &Value) -> Result<()>;
    async fn kpi_document(&mut self, kind: &str, identifier: &str) -> Result<Option<Value>>;
    /// Every document of a kind, by identifier.
    async fn kpi_documents(&mut self, kind: &str) -> Result<Vec<Value>>;
    async fn delete_kpi_document(&mut self, kind: &str, identifier: &str) -> Result<bool>;
}

/// A notification in a person's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub user: String,
    /// `run.failed`, ... (`portolan_model::notification::Topic`).
    pub topic: String,
    pub title: String,
    /// A path in the portal (`/runs/...`).
    pub link: String,
    pub created_at: Millis,
    pub read_at: Option<Millis>,
    /// How its webhook delivery went (`delivered`, or why not); `None` without one.
    pub delivery: Option<String>,
}

/// Each person's inbox and notification preferences.
#[async_trait::async_trait]
pub trait NotificationStore: Send {
    async fn insert_notification(&mut self, note: &Notification) -> Result<()>;
    async fn notification(&mut self, id: &str) -> Result<Option<Notification>>;
    /// A person's newest first, at most `limit`.
    async fn notifications(&mut self, user: &str, unread_only: bool, limit: u32) -> Result<Vec<Notification>>;
    async fn count_unread_notifications(&mut self, user: &str) -> Result<u64>;
    /// Marks one of a person's notifications (every one, with `None`) read; how many were unread.
    async fn mark_notifications_read(&mut self, user: &str, id: Option<&str>, at: Millis) -> Result<u64>;
    async fn set_notification_delivery(&mut self, id: &str, delivery: &str) -> Result<()>;
    /// Removes notifications made before a time (retention); how many.
    async fn delete_notifications_before(&mut self, before: Millis) -> Result<u64>;
    async fn put_notification_preferences(&mut self, user: &str, document: &Value) -> Result<()>;
    async fn notification_preferences(&mut self, user: &str) -> Result<Option<Value>>;
    /// Links a Slack user to a Portolan user (replacing the Slack user's earlier link).
    async fn put_slack_link(&mut self, link: &SlackLink) -> Result<()>;
    async fn slack_link(&mut self, team: &str, slack_user: &str) -> Result<Option<SlackLink>>;
    /// A Portolan user's Slack links, oldest first.
    async fn slack_links_of(&mut self, user: &str) -> Result<Vec<SlackLink>>;
    /// Removes a Portolan user's Slack links; how many.
    async fn delete_slack_links(&mut self, user: &str) -> Result<u64>;
    async fn put_slack_thread(&mut self, thread: &SlackThread) -> Result<()>;
    async fn slack_thread(&mut self, run: &str) -> Result<Option<SlackThread>>;
}

/// A Slack user who acts as a Portolan user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackLink {
    /// The Slack workspace (`T...`) and user (`U...`).
    pub team: String,
    pub slack_user: String,
    pub user: String,
    pub linked_at: Millis,
    /// How it was made: `email` (the same verified address) or `link` (a one-time link).
    pub method: String,
}

/// The Slack message that tells of a run started from Slack: its updates go in its thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackThread {
    pub run: String,
    pub channel: String,
    pub ts: String,
}
