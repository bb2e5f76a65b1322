//! PostgreSQL, for several `portolan serve` replicas sharing one database. Documents are JSONB.
//! Reads run in REPEATABLE READ, READ ONLY transactions (one snapshot per request); writes in
//! READ COMMITTED, where entity writes are guarded by version (see [`crate::EntityStore::put_entities`]) and
//! serialisation failures or deadlocks surface as [`StoreError::Conflict`].

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use portolan_model::audit::AuditKey;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};
use tokio::sync::broadcast;

use crate::shared::to_json;
use crate::{AuditKeySlot, CHANGE_BUFFER, ChangeEvent, Result, Store, StoreError, Tx};

mod blueprints;
mod entities;
mod scorecards;

crate::shared::shared_stores!(
    PgTx,
    sqlx::Postgres,
    crate::query_sql::Dialect::Postgres,
    claim = " FOR UPDATE SKIP LOCKED",
    audit = " FOR UPDATE"
);

pub struct PostgresStore {
    pool: PgPool,
    changes: broadcast::Sender<ChangeEvent>,
    audit_key: AuditKeySlot,
    statistics: Arc<Statistics>,
}

/// Keeps the planner's statistics of the catalog's tables up with bulk writes. Autovacuum can be
/// off, and even when on it analyzes a table that grows from nothing late: until then PostgreSQL
/// plans for an empty table and keeps those plans for prepared statements (measured: counting one
/// system's services took about a second at 100,000 services, 1.7 ms once analyzed).
struct Statistics {
    pool: PgPool,
    /// Entities written since the last ANALYZE.
    written: AtomicU64,
    /// Entities written before the last ANALYZE (about what the tables held then).
    analyzed_at: AtomicU64,
    running: AtomicBool,
}

/// The fewest entity writes that start an ANALYZE; once the tables are larger, a fifth of what
/// they held at the last one.
const ANALYZE_AFTER: u64 = 10_000;

impl Statistics {
    fn record(self: &Arc<Self>, entities: u64) {
        let written = self.written.fetch_add(entities, Ordering::Relaxed) + entities;
        let due = ANALYZE_AFTER.max(self.analyzed_at.load(Ordering::Relaxed) / 5);
        if written < due || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let statistics = Arc::clone(self);
        tokio::spawn(async move {
            let written = statistics.written.swap(0, Ordering::Relaxed);
            match sqlx::query("ANALYZE entities, entity_references").execute(&statistics.pool).await {
                Ok(_) => {
                    statistics.analyzed_at.fetch_add(written, Ordering::Relaxed);
                }
                Err(err) => {
                    statistics.written.fetch_add(written, Ordering::Relaxed);
                    tracing::warn!(%err, "cannot update the planner's statistics");
                }
            }
            statistics.running.store(false, Ordering::Release);
        });
    }
}

/// The NOTIFY channel change events travel on between replicas.
const CHANGES_CHANNEL: &str = "portolan_changes";

impl PostgresStore {
    /// Connects to `url` and applies pending migrations (replicas starting together take turns:
    /// sqlx holds an advisory lock while migrating).
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(PgConnectOptions::from_str(url)?).await
    }

    /// Like [`PostgresStore::open`], for a database that must already hold Portolan's tables:
    /// an empty database is refused rather than set up.
    pub async fn open_existing(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let probe = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('audit_log') IS NOT NULL").fetch_one(&probe).await?;
        probe.close().await;
        if !exists {
            return Err(StoreError::Unavailable(
                "the database holds no Portolan catalog (`portolan serve` sets one up)".into(),
            ));
        }
        Self::open_with(options).await
    }

    /// Like [`PostgresStore::open`], inside `schema` (created if missing): lets tests share one
    /// database without sharing tables.
    pub async fn open_in_schema(url: &str, schema: &str) -> Result<Self> {
        if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Other(format!("invalid schema name {schema:?}")));
        }
        let options = PgConnectOptions::from_str(url)?;
        let admin = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).execute(&admin).await?;
        admin.close().await;
        Self::open_with(options.options([("search_path", schema)])).await
    }

    async fn open_with(options: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // Fail fast when the database is gone: requests answer 503 instead of hanging.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        let migrator = sqlx::migrate!("./migrations/postgres");
        if let Err(err) = migrator.run(&pool).await {
            let newer = matches!(err, sqlx::migrate::MigrateError::VersionMissing(_));
            let written_by = sqlx::query_scalar(crate::WRITTEN_BY).fetch_optional(&pool).await.ok().flatten();
            let message = crate::migration_failed(err, &migrator, written_by);
            return Err(if newer { StoreError::Other(message) } else { StoreError::Unavailable(message) });
        }
        // A database from before a change to the indexing gets its indexes now.
        let mut indexing = PgTx::new(pool.begin().await?, true, None, None);
        indexing.sync_property_indexes().await?;
        crate::note_version(&mut indexing).await?;
        indexing.tx.commit().await?;
        let changes = broadcast::channel(CHANGE_BUFFER).0;
        tokio::spawn(relay_changes(pool.clone(), changes.clone()));
        let statistics = Arc::new(Statistics {
            pool: pool.clone(),
            written: AtomicU64::new(0),
            analyzed_at: AtomicU64::new(0),
            running: AtomicBool::new(false),
        });
        Ok(Self { pool, changes, audit_key: AuditKeySlot::default(), statistics })
    }
}

/// Forwards NOTIFY messages from every replica to this process's listeners, reconnecting after
/// the database comes back.
async fn relay_changes(pool: PgPool, changes: broadcast::Sender<ChangeEvent>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) if pool.is_closed() => {
                tracing::debug!(%err, "pool closed; change relay stops");
                return;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANGES_CHANNEL).await {
            tracing::warn!(%err, "cannot listen for changes; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.recv().await {
                Ok(notification) => match serde_json::from_str::<ChangeEvent>(notification.payload()) {
                    Ok(event) => {
                        let _ = changes.send(event);
                    }
                    Err(err) => tracing::warn!(%err, "unreadable change event"),
                },
                Err(err) if pool.is_closed() => {
                    tracing::debug!(%err, "pool closed; change relay stops");
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, "change relay lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    #[tracing::instrument(level = "debug", name = "store.begin", skip_all, fields(db = "postgresql", writable = false))]
    async fn read(&self) -> Result<Box<dyn Tx>> {
        let tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
        Ok(Box::new(PgTx::new(tx, false, None, None)))
    }

    #[tracing::instrument(level = "debug", name = "store.begin", skip_all, fields(db = "postgresql", writable = true))]
    async fn write(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(PgTx::new(
            self.pool.begin().await?,
            true,
            self.audit_key.get(),
            Some(Arc::clone(&self.statistics)),
        )))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn changes(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    fn set_audit_key(&self, key: AuditKey) -> Result<()> {
        self.audit_key.set(key)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

struct PgTx {
    tx: Transaction<'static, Postgres>,
    /// Write transactions lock what they read (see `BlueprintStore::blueprint`); read ones see a snapshot.
    writable: bool,
    /// Signs the audit records this transaction appends.
    audit_key: Option<AuditKey>,
    /// Change events to NOTIFY, all in one statement just before commit.
    events: Vec<String>,
    /// Entities this transaction wrote, counted towards the next ANALYZE once it commits.
    entities_written: u64,
    statistics: Option<Arc<Statistics>>,
}

impl PgTx {
    fn new(
        tx: Transaction<'static, Postgres>,
        writable: bool,
        audit_key: Option<AuditKey>,
        statistics: Option<Arc<Statistics>>,
    ) -> Self {
        Self { tx, writable, audit_key, events: Vec::new(), entities_written: 0, statistics }
    }

    fn share(&self) -> &'static str {
        if self.writable { " FOR SHARE" } else { "" }
    }
}

impl PgTx {
    /// JSON values are stored as JSONB.
    fn json_param<T: serde::Serialize>(value: &T) -> Result<Json<&T>> {
        Ok(Json(value))
    }

    fn json_column<T: serde::de::DeserializeOwned>(row: &PgRow, name: &str) -> Result<T> {
        let Json(value) = row.try_get(name)?;
        Ok(value)
    }
}

#[async_trait::async_trait]
impl Tx for PgTx {
    async fn publish(&mut self, event: &ChangeEvent) -> Result<()> {
        self.events.push(to_json(event)?);
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "store.commit", skip_all, fields(db = "postgresql"))]
    async fn commit(mut self: Box<Self>) -> Result<()> {
        // NOTIFY is transactional: delivered to every listening replica at commit, never before,
        // in the order sent. One statement for them all: a bulk write publishes one per entity.
        if !self.events.is_empty() {
            sqlx::query("SELECT pg_notify($1, event) FROM unnest($2::text[]) AS event")
                .bind(CHANGES_CHANNEL)
                .bind(std::mem::take(&mut self.events))
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        if let Some(statistics) = &self.statistics {
            statistics.record(self.entities_written);
        }
        Ok(())
    }
}
