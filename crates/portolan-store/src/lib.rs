//! Portolan's storage. The engine sees only the [`Store`] and [`Tx`] traits; each backend
//! implements them with its own migrations, and one conformance suite (in this crate's tests)
//! holds every backend to the same behaviour.

use std::sync::Arc;

use portolan_model::audit::AuditKey;
use portolan_model::scorecard::Scorecard;
use portolan_model::{Blueprint, Entity, EntityRef, Millis, Reference};
use serde_json::Value;

pub mod actions;
pub mod audit;
pub mod identity;
pub mod postgres;
pub mod query_sql;
mod shared;
pub mod sqlite;
mod tx;

pub use actions::{ActionRecord, NewRunLog, RunFilter, RunnerToken, SecretMeta};
pub use audit::AuditFilter;
pub use identity::{Account, AccountKind, ApiToken, ClientCredentials, Session};
pub use tx::{
    ActionStore, AuditStore, BlueprintStore, EntityStore, IdentityStore, IntegrationStore, JobStore, KpiSample,
    KpiStore, LocationStore, Notification, NotificationStore, PermissionStore, RunStore, ScorecardStore, SearchStore,
    SecretStore, SlackLink, SlackThread, SourceStore, Tx,
};

/// The transaction traits: a caller needs the one that declares a method in scope to call it on a
/// `dyn Tx`.
pub mod prelude {
    pub use crate::tx::{
        ActionStore, AuditStore, BlueprintStore, EntityStore, IdentityStore, IntegrationStore, JobStore, KpiStore,
        LocationStore, NotificationStore, PermissionStore, RunStore, ScorecardStore, SearchStore, SecretStore,
        SourceStore, Tx,
    };
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded; the request may succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refuses writes for now (the text says why: its disk is full, or it is
    /// read-only); reads still work, and writes do again once that is mended.
    #[error("the database refuses writes: {0}")]
    WritesRefused(&'static str),
    /// A uniqueness constraint refused the write (a concurrent create of the same thing).
    #[error("conflicting write: {0}")]
    Conflict(String),
    /// Stored data that cannot be read back: a bug or tampering, never the caller's fault.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Other(String),
}

/// A blueprint as stored, with who made and last changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlueprintRecord {
    pub blueprint: Blueprint,
    pub created_at: Millis,
    pub created_by: String,
    pub updated_at: Millis,
    pub updated_by: String,
}

/// Where an applied object came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedObject {
    pub source: String,
    /// The file that declares it, as the source named it.
    pub file: String,
    pub applied_at: Millis,
}

/// One catalog-as-code source: how many objects it holds and when it last applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    pub source: String,
    pub objects: i64,
    pub applied_at: Millis,
}

/// A scorecard as stored, with its blueprint and who made and last changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorecardRecord {
    pub blueprint: String,
    pub scorecard: Scorecard,
    pub created_at: Millis,
    pub created_by: String,
    pub updated_at: Millis,
    pub updated_by: String,
}

/// A change every replica hears about as soon as it commits (live updates to browsers).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeEvent {
    /// `entity.created`, `entity.updated`, `entity.deleted`, `entity.computed`, `timer.expired`;
    /// for runs `run.created`, `run.updated`, `run.log`.
    pub kind: String,
    /// The entity's blueprint; for runs, the action's blueprint (empty when it has none).
    pub blueprint: String,
    /// The entity's identifier; for runs, the run's id.
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// For `timer.expired`: the timer property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

/// How many change events a slow listener may fall behind before it misses some.
pub const CHANGE_BUFFER: usize = 1_024;

/// Background work to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    /// Jobs with the same key coalesce while they wait.
    pub dedupe_key: Option<String>,
    pub payload: Value,
    pub run_after: Millis,
}

/// A claimed job: its lease runs until `lease_until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub attempts: i64,
    pub lease_until: Millis,
}

/// One entity to store, with the references it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityWrite {
    pub entity: Entity,
    pub references: Vec<Reference>,
}

/// An entity that points at another one, and through what.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Referrer {
    pub source: EntityRef,
    pub via: String,
}

/// A database: hands out transactions. Reads see one consistent snapshot; writes are atomic.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// A read-only transaction.
    async fn read(&self) -> Result<Box<dyn Tx>>;
    /// A read-write transaction; nothing it does is visible to others until [`Tx::commit`].
    async fn write(&self) -> Result<Box<dyn Tx>>;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Changes committed by any process sharing this database, from now on.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<ChangeEvent>;
    /// The key audit records written from now on are signed with (once; setting another key
    /// later is an error).
    fn set_audit_key(&self, key: AuditKey) -> Result<()>;
    /// Closes every connection, waiting for them to finish (SQLite folds its write-ahead log back
    /// into the database file then): before the database's files are moved or copied.
    async fn close(&self);
}

/// A store's audit key, shared with the transactions it hands out.
#[derive(Debug, Default, Clone)]
pub(crate) struct AuditKeySlot(Arc<std::sync::OnceLock<AuditKey>>);

impl AuditKeySlot {
    pub(crate) fn set(&self, key: AuditKey) -> Result<()> {
        let kept = self.0.get_or_init(|| key.clone());
        if *kept != key {
            return Err(StoreError::Other("this store already signs its audit log with another key".into()));
        }
        Ok(())
    }

    pub(crate) fn get(&self) -> Option<AuditKey> {
        self.0.get().cloned()
    }
}

/// Opens the store a location names: a `postgres://` URL or, otherwise, a SQLite data directory
/// (created if missing).
pub async fn open(location: &str) -> Result<Arc<dyn Store>> {
    if is_postgres_url(location) {
        return Ok(Arc::new(postgres::PostgresStore::open(location).await?));
    }
    Ok(Arc::new(sqlite::SqliteStore::open(std::path::Path::new(location)).await?))
}

/// Opens a store that must already hold a Portolan database (pending migrations are applied):
/// for the commands that inspect or change data, which must not create an empty one.
pub async fn open_existing(location: &str) -> Result<Arc<dyn Store>> {
    if is_postgres_url(location) {
        return Ok(Arc::new(postgres::PostgresStore::open_existing(location).await?));
    }
    Ok(Arc::new(sqlite::SqliteStore::open_existing(std::path::Path::new(location)).await?))
}

/// The setting naming the Portolan release that last opened a database.
const VERSION_SETTING: &str = "portolan_version";
/// Which release that was, read when migrating fails (the same text for both backends).
const WRITTEN_BY: &str = "SELECT value FROM settings WHERE name = 'portolan_version'";

/// Why migrating failed. A database that holds a migration this build does not know was migrated
/// by a newer Portolan: refused, naming both versions, rather than run on a schema it misreads.
fn migration_failed(
    err: sqlx::migrate::MigrateError,
    migrator: &sqlx::migrate::Migrator,
    written_by: Option<String>,
) -> String {
    match err {
        sqlx::migrate::MigrateError::VersionMissing(version) => {
            let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
            let by = written_by.map(|v| format!(" by Portolan {v}")).unwrap_or_default();
            format!(
                "this database was migrated{by} to schema version {version}, which Portolan {} does not know \
                 (it knows versions up to {known}): run the newer Portolan, or restore a backup made before \
                 the upgrade",
                env!("CARGO_PKG_VERSION")
            )
        }
        other => format!("migration failed: {other}"),
    }
}

/// Records which release opened the database last (so a refusal by an older one can name it).
async fn note_version(tx: &mut dyn Tx) -> Result<()> {
    let current = env!("CARGO_PKG_VERSION");
    if tx.setting(VERSION_SETTING).await?.as_deref() != Some(current) {
        tx.put_setting(VERSION_SETTING, current).await?;
    }
    Ok(())
}

pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

const DISK_FULL: &str = "its disk is full";
const READ_ONLY: &str = "it is read-only";

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(err.to_string())
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_string()),
            // SQLite's primary result codes are the low byte of the extended ones.
            sqlx::Error::Database(db) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
                match db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff) {
                    // SQLITE_BUSY / SQLITE_LOCKED: another process held the database longer than
                    // the busy timeout.
                    Some(5 | 6) => StoreError::Unavailable(db.message().to_string()),
                    Some(13) => StoreError::WritesRefused(DISK_FULL),
                    Some(8) => StoreError::WritesRefused(READ_ONLY),
                    // SQLITE_IOERR, SQLITE_CANTOPEN: the file system failed the database.
                    Some(10 | 14) => StoreError::Unavailable(db.message().to_string()),
                    _ => StoreError::Other(err.to_string()),
                }
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // PostgreSQL serialization failure / deadlock: a concurrent writer won.
                Some("40001" | "40P01") => StoreError::Conflict(db.message().to_string()),
                Some("53100") => StoreError::WritesRefused(DISK_FULL),
                // A read-only transaction: a standby, or `default_transaction_read_only`.
                Some("25006") => StoreError::WritesRefused(READ_ONLY),
                // PostgreSQL connection exceptions, shutdown, too many connections.
                Some(code) if code.starts_with("08") || code.starts_with("57P") || code == "53300" => {
                    StoreError::Unavailable(db.message().to_string())
                }
                _ => StoreError::Other(err.to_string()),
            },
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::Corrupt(err.to_string()),
            _ => StoreError::Other(err.to_string()),
        }
    }
}
