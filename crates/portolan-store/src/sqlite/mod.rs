//! The embedded default: SQLite in WAL mode in a data directory. One writer connection serialises
//! writes inside the process (SQLite allows one writer at a time anyway, and queueing in the pool is
//! cheaper than retrying on SQLITE_BUSY); a small pool of read-only connections serves reads
//! concurrently from WAL snapshots.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use portolan_model::audit::AuditKey;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::broadcast;

use crate::shared::{parse_json, to_json};
use crate::{AuditKeySlot, CHANGE_BUFFER, ChangeEvent, Result, Store, StoreError, Tx};

mod blueprints;
mod entities;
mod scorecards;

crate::shared::shared_stores!(SqliteTx, sqlx::Sqlite, crate::query_sql::Dialect::Sqlite, claim = "", audit = "");

/// The file inside the data directory that holds the database.
pub const DATABASE_FILE: &str = "portolan.db";

/// Write transactions take the database's write lock when they begin, waiting up to the busy
/// timeout for another process (`portolan admin` beside a server) to finish. A deferred `BEGIN`
/// would take it at the first write instead, and SQLite answers SQLITE_BUSY at once, without
/// waiting, when that upgrade meets another writer or a snapshot a writer has moved past.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// One process owns a SQLite database, so change events stay in process.
    changes: broadcast::Sender<ChangeEvent>,
    audit_key: AuditKeySlot,
}

/// Writes a consistent copy of the database in `data_dir` into the new file `to`, while servers
/// go on writing to it: `VACUUM INTO` reads one snapshot (and leaves out free pages). The copy is
/// synced to disk and must pass SQLite's `quick_check` (every page read back, without the
/// index-by-index comparison `integrity_check` adds).
pub async fn backup(data_dir: &Path, to: &Path) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let from = data_dir.join(DATABASE_FILE);
    if !from.is_file() {
        return Err(StoreError::Unavailable(format!("{} holds no Portolan database", data_dir.display())));
    }
    let mut source = SqliteConnectOptions::new()
        .filename(&from)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5))
        // Copying and checking a large database is slow by nature: no slow-statement warnings.
        .disable_statement_logging()
        .connect()
        .await?;
    sqlx::query("VACUUM INTO ?").bind(to.to_string_lossy().into_owned()).execute(&mut source).await?;
    source.close().await?;
    let cannot = |e: std::io::Error| StoreError::Unavailable(format!("cannot sync {}: {e}", to.display()));
    std::fs::File::open(to).and_then(|f| f.sync_all()).map_err(cannot)?;
    let mut copy =
        SqliteConnectOptions::new().filename(to).read_only(true).disable_statement_logging().connect().await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check").fetch_one(&mut copy).await?;
    copy.close().await?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!("the copy {} fails SQLite's quick check: {check}", to.display())));
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and applies pending migrations.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data directory {}: {e}", data_dir.display()))
        })?;
        Self::open_file(data_dir, true).await
    }

    /// Opens the database in `data_dir`, which must exist: never creates one.
    pub async fn open_existing(data_dir: &Path) -> Result<Self> {
        if !data_dir.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "there is no data directory {} (`portolan serve` creates one; point --data at an existing one)",
                data_dir.display()
            )));
        }
        if !data_dir.join(DATABASE_FILE).is_file() {
            return Err(StoreError::Unavailable(format!(
                "{} holds no Portolan database (no {DATABASE_FILE})",
                data_dir.display()
            )));
        }
        Self::open_file(data_dir, false).await
    }

    async fn open_file(data_dir: &Path, create: bool) -> Result<Self> {
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed change (and, later, its audit record) survives a power cut.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // A connection to a local file cannot go stale: no ping before each use (sqlx's default),
        // which cost a round trip to the connection's thread per transaction.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let migrator = sqlx::migrate!("./migrations/sqlite");
        if let Err(err) = migrator.run(&writer).await {
            let written_by = sqlx::query_scalar(crate::WRITTEN_BY).fetch_optional(&writer).await.ok().flatten();
            return Err(StoreError::Other(crate::migration_failed(err, &migrator, written_by)));
        }
        let changes = broadcast::channel(CHANGE_BUFFER).0;
        // A database from before a change to the indexing gets its indexes now.
        let mut indexing = SqliteTx {
            tx: writer.begin_with(BEGIN_WRITE).await?,
            writable: true,
            events: Vec::new(),
            changes: changes.clone(),
            audit_key: None,
        };
        indexing.sync_property_indexes().await?;
        crate::note_version(&mut indexing).await?;
        indexing.tx.commit().await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, readers, changes, audit_key: AuditKeySlot::default() })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    #[tracing::instrument(level = "debug", name = "store.begin", skip_all, fields(db = "sqlite", writable = false))]
    async fn read(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx {
            tx: self.readers.begin().await?,
            writable: false,
            events: Vec::new(),
            changes: self.changes.clone(),
            audit_key: None,
        }))
    }

    #[tracing::instrument(level = "debug", name = "store.begin", skip_all, fields(db = "sqlite", writable = true))]
    async fn write(&self) -> Result<Box<dyn Tx>> {
        let tx = match self.writer.begin_with(BEGIN_WRITE).await {
            // A write refused for a full disk can leave the writer connection believing it is
            // still inside that transaction; a new connection takes writes once there is room.
            Err(sqlx::Error::InvalidSavePointStatement) => {
                let writer = self.writer.acquire().await?;
                if let Err(error) = writer.close().await {
                    tracing::warn!(%error, "closing the database writer");
                }
                tracing::warn!("the database writer was left inside a failed transaction; reconnected");
                self.writer.begin_with(BEGIN_WRITE).await?
            }
            begun => begun?,
        };
        Ok(Box::new(SqliteTx {
            tx,
            writable: true,
            events: Vec::new(),
            changes: self.changes.clone(),
            audit_key: self.audit_key.get(),
        }))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn changes(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    fn set_audit_key(&self, key: AuditKey) -> Result<()> {
        self.audit_key.set(key)
    }

    async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    /// Only write transactions claim runs (on SQLite that locks nothing: there is one writer).
    writable: bool,
    /// Published when the transaction commits.
    events: Vec<ChangeEvent>,
    changes: broadcast::Sender<ChangeEvent>,
    /// Signs the audit records this transaction appends.
    audit_key: Option<AuditKey>,
}

impl SqliteTx {
    /// JSON values are stored as text.
    fn json_param<T: serde::Serialize>(value: &T) -> Result<String> {
        to_json(value)
    }

    fn json_column<T: serde::de::DeserializeOwned>(row: &SqliteRow, name: &str) -> Result<T> {
        parse_json(row.try_get(name)?)
    }
}

#[async_trait::async_trait]
impl Tx for SqliteTx {
    async fn publish(&mut self, event: &ChangeEvent) -> Result<()> {
        self.events.push(event.clone());
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "store.commit", skip_all, fields(db = "sqlite"))]
    async fn commit(self: Box<Self>) -> Result<()> {
        let SqliteTx { tx, events, changes, .. } = *self;
        tx.commit().await?;
        for event in events {
            // No listener is not an error.
            let _ = changes.send(event);
        }
        Ok(())
    }
}
