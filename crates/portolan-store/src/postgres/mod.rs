//! PostgreSQL, for several `portolan serve` replicas sharing one database. Documents are JSONB.
//! Reads run in REPEATABLE READ, READ ONLY transactions (one snapshot per request); writes in
//! READ COMMITTED, where entity writes are guarded by version (see [`crate::EntityStore::put_entities`]) and
//! serialisation failures or deadlocks surface as [`StoreError::Conflict`].

use std::str::FromStr;
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
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        // A database from before a change to the indexing gets its indexes now.
        let mut indexing = PgTx { tx: pool.begin().await?, writable: true, audit_key: None, events: Vec::new() };
        indexing.sync_property_indexes().await?;
        indexing.tx.commit().await?;
        let changes = broadcast::channel(CHANGE_BUFFER).0;
        tokio::spawn(relay_changes(pool.clone(), changes.clone()));
        Ok(Self { pool, changes, audit_key: AuditKeySlot::default() })
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
    async fn read(&self) -> Result<Box<dyn Tx>> {
        let tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
        Ok(Box::new(PgTx { tx, writable: false, audit_key: None, events: Vec::new() }))
    }

    async fn write(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(PgTx {
            tx: self.pool.begin().await?,
            writable: true,
            audit_key: self.audit_key.get(),
            events: Vec::new(),
        }))
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
}

struct PgTx {
    tx: Transaction<'static, Postgres>,
    /// Write transactions lock what they read (see `BlueprintStore::blueprint`); read ones see a snapshot.
    writable: bool,
    /// Signs the audit records this transaction appends.
    audit_key: Option<AuditKey>,
    /// Change events to NOTIFY, all in one statement just before commit.
    events: Vec<String>,
}

impl PgTx {
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
        Ok(())
    }
}
