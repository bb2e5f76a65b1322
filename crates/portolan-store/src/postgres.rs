//! PostgreSQL, for several `portolan serve` replicas sharing one database. Documents are JSONB.
//! Reads run in REPEATABLE READ, READ ONLY transactions (one snapshot per request); writes in
//! READ COMMITTED, where entity writes are guarded by version (see [`Tx::put_entities`]) and
//! serialisation failures or deadlocks surface as [`StoreError::Conflict`].

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use portolan_model::run::{Run, RunLog};
use portolan_model::{Blueprint, Entity, EntityRef, Millis};
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, Row, Transaction};

use crate::query_sql::{self, AggregatePlan, AggregateResult, Dialect, Param, SearchPlan, Sql, SqlRunner};
use tokio::sync::broadcast;

use portolan_model::audit::{AuditEntry, AuditKey, AuditRecord, StoredRecord};

use crate::{
    Account, ActionRecord, ApiToken, AuditFilter, AuditKeySlot, BlueprintRecord, CHANGE_BUFFER, ChangeEvent,
    EntityWrite, Job, NewJob, NewRunLog, Referrer, Result, RunFilter, RunnerToken, ScorecardRecord, SecretMeta,
    Session, Store, StoreError, Tx,
};

const ENTITY_COLUMNS: &str = "blueprint, identifier, title, icon, team, properties, relations, scorecards, diagnostics, version, \
     created_at, created_by, updated_at, updated_by";

/// Rows per multi-row write; arrays are bound whole, so this only bounds statement size.
const ROWS_PER_STATEMENT: usize = 1_000;

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
        let mut indexing = PgTx { tx: pool.begin().await?, writable: true, audit_key: None };
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
        Ok(Box::new(PgTx { tx, writable: false, audit_key: None }))
    }

    async fn write(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(PgTx { tx: self.pool.begin().await?, writable: true, audit_key: self.audit_key.get() }))
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
    /// Write transactions lock what they read (see `Tx::blueprint`); read ones see a snapshot.
    writable: bool,
    /// Signs the audit records this transaction appends.
    audit_key: Option<AuditKey>,
}

impl PgTx {
    fn share(&self) -> &'static str {
        if self.writable { " FOR SHARE" } else { "" }
    }
}

fn entity_from_row(row: &PgRow) -> Result<Entity> {
    let Json(team): Json<Vec<String>> = row.try_get("team")?;
    let Json(properties): Json<Map<String, Value>> = row.try_get("properties")?;
    let Json(relations): Json<Map<String, Value>> = row.try_get("relations")?;
    let Json(scorecards): Json<Map<String, Value>> = row.try_get("scorecards")?;
    let Json(diagnostics): Json<Map<String, Value>> = row.try_get("diagnostics")?;
    Ok(Entity {
        blueprint: row.try_get("blueprint")?,
        identifier: row.try_get("identifier")?,
        title: row.try_get("title")?,
        icon: row.try_get("icon")?,
        team,
        properties,
        relations,
        scorecards,
        diagnostics,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn blueprint_from_row(row: &PgRow) -> Result<BlueprintRecord> {
    let Json(blueprint): Json<Blueprint> = row.try_get("document")?;
    Ok(BlueprintRecord {
        blueprint,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(e.to_string()))
}

impl PgTx {
    /// Inserts a blueprint; with `upsert`, replaces the one with its identifier (keeping its
    /// creation stamp). Without, an existing one is a conflict.
    async fn write_blueprint(&mut self, record: &BlueprintRecord, upsert: bool) -> Result<()> {
        let sql = if upsert {
            "INSERT INTO blueprints (identifier, document, created_at, created_by, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (identifier) DO UPDATE SET document = excluded.document,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by"
        } else {
            "INSERT INTO blueprints (identifier, document, created_at, created_by, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)"
        };
        sqlx::query(sql)
            .bind(&record.blueprint.identifier)
            .bind(Json(&record.blueprint))
            .bind(record.created_at)
            .bind(&record.created_by)
            .bind(record.updated_at)
            .bind(&record.updated_by)
            .execute(&mut *self.tx)
            .await?;
        self.sync_property_indexes().await
    }

    /// Blueprint changes take turns (across replicas too) until they commit, so that two never
    /// build or drop the same index.
    async fn lock_property_indexes(&mut self) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('portolan property indexes'))")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Creates and drops property indexes to match the blueprints (`query_sql::property_index_changes`).
    async fn sync_property_indexes(&mut self) -> Result<()> {
        self.lock_property_indexes().await?;
        let blueprints: Vec<_> = self.blueprints().await?.into_iter().map(|r| r.blueprint).collect();
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'entities'
             AND left(indexname, length($1)) = $1",
        )
        .bind(query_sql::PROPERTY_INDEX_PREFIX)
        .fetch_all(&mut *self.tx)
        .await?;
        for statement in query_sql::property_index_changes(Dialect::Postgres, &blueprints, &existing) {
            sqlx::query(AssertSqlSafe(statement)).execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Tx for PgTx {
    async fn blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>> {
        let sql = format!("SELECT * FROM blueprints WHERE identifier = $1{}", self.share());
        let row = sqlx::query(AssertSqlSafe(sql)).bind(identifier).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(blueprint_from_row).transpose()
    }

    async fn lock_blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>> {
        // Before anything else the change writes: a blueprint's deletion removes its entities
        // first, and must not then wait for the lock while another change builds an index.
        self.lock_property_indexes().await?;
        let row = sqlx::query("SELECT * FROM blueprints WHERE identifier = $1 FOR UPDATE")
            .bind(identifier)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(blueprint_from_row).transpose()
    }

    async fn lock_entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>> {
        let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = $1 AND identifier = $2 FOR UPDATE");
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(blueprint).bind(identifier).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(entity_from_row).transpose()
    }

    async fn insert_blueprint(&mut self, record: &BlueprintRecord) -> Result<()> {
        self.write_blueprint(record, false).await
    }

    async fn blueprints(&mut self) -> Result<Vec<BlueprintRecord>> {
        let rows = sqlx::query("SELECT * FROM blueprints ORDER BY identifier").fetch_all(&mut *self.tx).await?;
        rows.iter().map(blueprint_from_row).collect()
    }

    async fn put_blueprint(&mut self, record: &BlueprintRecord) -> Result<()> {
        self.write_blueprint(record, true).await
    }

    async fn delete_blueprint(&mut self, identifier: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM blueprints WHERE identifier = $1").bind(identifier).execute(&mut *self.tx).await?;
        self.sync_property_indexes().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>> {
        let sql =
            format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = $1 AND identifier = $2{}", self.share());
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(blueprint).bind(identifier).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(entity_from_row).transpose()
    }

    async fn entities(&mut self, blueprint: &str, identifiers: &[String]) -> Result<Vec<Entity>> {
        // A join with UNNEST rather than `= ANY($2)`: the generic plan of a prepared `= ANY`
        // scanned the whole table once sqlx reused the statement (2 s at 100k entities).
        let sql = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities JOIN UNNEST($2::text[]) AS wanted(identifier) USING (identifier)
             WHERE blueprint = $1 ORDER BY identifier{}",
            if self.writable { " FOR SHARE OF entities" } else { "" }
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(blueprint).bind(identifiers).fetch_all(&mut *self.tx).await?;
        rows.iter().map(entity_from_row).collect()
    }

    async fn existing(&mut self, blueprint: &str, identifiers: &[String]) -> Result<HashSet<String>> {
        let sql = format!(
            "SELECT identifier FROM entities JOIN UNNEST($2::text[]) AS wanted(identifier) USING (identifier)
             WHERE blueprint = $1 ORDER BY identifier{}",
            if self.writable { " FOR SHARE OF entities" } else { "" }
        );
        let found: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(blueprint).bind(identifiers).fetch_all(&mut *self.tx).await?;
        Ok(found.into_iter().collect())
    }

    async fn put_entities(&mut self, writes: &[EntityWrite]) -> Result<()> {
        // Rows are locked in one order by every writer (here and in `entities`/`existing`), so two
        // writers that touch the same entities wait for each other instead of deadlocking.
        let mut ordered: Vec<&EntityWrite> = writes.iter().collect();
        ordered.sort_by(|a, b| {
            (&a.entity.blueprint, &a.entity.identifier).cmp(&(&b.entity.blueprint, &b.entity.identifier))
        });
        for chunk in ordered.chunks(ROWS_PER_STATEMENT) {
            let mut columns = EntityColumns::default();
            for write in chunk {
                columns.push(&write.entity)?;
            }
            let sql = format!(
                "INSERT INTO entities ({ENTITY_COLUMNS})
                 SELECT b, i, t, ic, tm::jsonb, p::jsonb, r::jsonb, sc::jsonb, dg::jsonb, v, ca, cb, ua, ub
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::text[], $13::bigint[], $14::text[])
                      AS u(b, i, t, ic, tm, p, r, sc, dg, v, ca, cb, ua, ub)
                 ON CONFLICT (blueprint, identifier) DO UPDATE SET
                     title = excluded.title, icon = excluded.icon, team = excluded.team,
                     properties = excluded.properties, relations = excluded.relations, scorecards = excluded.scorecards, diagnostics = excluded.diagnostics,
                     version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                 WHERE entities.version = excluded.version - 1
                 RETURNING id, identifier"
            );
            let c = columns;
            let written = sqlx::query(AssertSqlSafe(sql))
                .bind(c.blueprint)
                .bind(c.identifier)
                .bind(c.title)
                .bind(c.icon)
                .bind(c.team)
                .bind(c.properties)
                .bind(c.relations)
                .bind(c.scorecards)
                .bind(c.diagnostics)
                .bind(c.version)
                .bind(c.created_at)
                .bind(c.created_by)
                .bind(c.updated_at)
                .bind(c.updated_by)
                .fetch_all(&mut *self.tx)
                .await?;
            if written.len() != chunk.len() {
                return Err(StoreError::Conflict(format!(
                    "{} of {} entities were changed by another writer",
                    chunk.len() - written.len(),
                    chunk.len()
                )));
            }
            let mut ids = HashMap::with_capacity(written.len());
            for row in &written {
                ids.insert(row.try_get::<String, _>("identifier")?, row.try_get::<i64, _>("id")?);
            }
            let updated: Vec<i64> = chunk
                .iter()
                .filter(|w| w.entity.version > 1)
                .filter_map(|w| ids.get(&w.entity.identifier).copied())
                .collect();
            if !updated.is_empty() {
                sqlx::query("DELETE FROM entity_references WHERE source_id = ANY($1)")
                    .bind(&updated)
                    .execute(&mut *self.tx)
                    .await?;
            }
            let (mut sources, mut vias, mut blueprints, mut targets) = (vec![], vec![], vec![], vec![]);
            for write in chunk {
                let Some(id) = ids.get(&write.entity.identifier) else { continue };
                for r in &write.references {
                    sources.push(*id);
                    vias.push(r.via.as_str());
                    blueprints.push(r.target_blueprint.as_str());
                    targets.push(r.target.as_str());
                }
            }
            if !sources.is_empty() {
                sqlx::query(
                    "INSERT INTO entity_references (source_id, via, target_blueprint, target_identifier)
                     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[])",
                )
                .bind(&sources)
                .bind(&vias)
                .bind(&blueprints)
                .bind(&targets)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        Ok(())
    }

    async fn delete_entity(&mut self, blueprint: &str, identifier: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM entities WHERE blueprint = $1 AND identifier = $2")
            .bind(blueprint)
            .bind(identifier)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_entities_of(&mut self, blueprint: &str) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM entities WHERE blueprint = $1").bind(blueprint).execute(&mut *self.tx).await?;
        Ok(done.rows_affected())
    }

    async fn list_entities(&mut self, blueprint: &str, after: Option<&str>, limit: u32) -> Result<Vec<Entity>> {
        let sql = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = $1 AND identifier > $2 ORDER BY identifier LIMIT $3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(blueprint)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(entity_from_row).collect()
    }

    async fn count_entities(&mut self, blueprint: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entities WHERE blueprint = $1")
            .bind(blueprint)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn referrers(&mut self, target: &EntityRef, limit: u32) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT DISTINCT e.blueprint, e.identifier, r.via
             FROM entity_references r JOIN entities e ON e.id = r.source_id
             WHERE r.target_blueprint = $1 AND r.target_identifier = $2
             ORDER BY e.blueprint, e.identifier, r.via LIMIT $3",
        )
        .bind(&target.blueprint)
        .bind(&target.identifier)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Referrer {
                    source: EntityRef { blueprint: row.try_get("blueprint")?, identifier: row.try_get("identifier")? },
                    via: row.try_get("via")?,
                })
            })
            .collect()
    }

    async fn scorecards(&mut self, blueprint: &str) -> Result<Vec<ScorecardRecord>> {
        let rows = sqlx::query("SELECT * FROM scorecards WHERE blueprint = $1 ORDER BY identifier")
            .bind(blueprint)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|row| {
                let Json(scorecard) = row.try_get("document")?;
                Ok(ScorecardRecord {
                    blueprint: row.try_get("blueprint")?,
                    scorecard,
                    created_at: row.try_get("created_at")?,
                    created_by: row.try_get("created_by")?,
                    updated_at: row.try_get("updated_at")?,
                    updated_by: row.try_get("updated_by")?,
                })
            })
            .collect()
    }

    async fn put_scorecard(&mut self, record: &ScorecardRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO scorecards (blueprint, identifier, document, created_at, created_by, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (blueprint, identifier) DO UPDATE SET document = excluded.document,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(&record.blueprint)
        .bind(&record.scorecard.identifier)
        .bind(Json(&record.scorecard))
        .bind(record.created_at)
        .bind(&record.created_by)
        .bind(record.updated_at)
        .bind(&record.updated_by)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_scorecard(&mut self, blueprint: &str, identifier: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM scorecards WHERE blueprint = $1 AND identifier = $2")
            .bind(blueprint)
            .bind(identifier)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_scorecard_results(&mut self, blueprint: &str, results: &[(String, Map<String, Value>)]) -> Result<()> {
        for chunk in results.chunks(ROWS_PER_STATEMENT) {
            let identifiers: Vec<&str> = chunk.iter().map(|(i, _)| i.as_str()).collect();
            let scores = chunk.iter().map(|(_, s)| to_json(s)).collect::<Result<Vec<String>>>()?;
            sqlx::query(
                "UPDATE entities SET scorecards = v.s::jsonb FROM UNNEST($2::text[], $3::text[]) AS v(i, s)
                 WHERE entities.blueprint = $1 AND entities.identifier = v.i",
            )
            .bind(blueprint)
            .bind(&identifiers)
            .bind(&scores)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn put_computed(
        &mut self,
        entity: &EntityRef,
        version: i64,
        properties: &Map<String, Value>,
        scorecards: &Map<String, Value>,
        diagnostics: &Map<String, Value>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE entities SET properties = $1, scorecards = $2, diagnostics = $6
             WHERE blueprint = $3 AND identifier = $4 AND version = $5",
        )
        .bind(Json(properties))
        .bind(Json(scorecards))
        .bind(&entity.blueprint)
        .bind(&entity.identifier)
        .bind(version)
        .bind(Json(diagnostics))
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn enqueue_jobs(&mut self, jobs: &[NewJob]) -> Result<()> {
        for job in jobs {
            sqlx::query(
                "INSERT INTO jobs (kind, dedupe_key, payload, run_after, created_at) VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (dedupe_key) WHERE lease_owner IS NULL DO NOTHING",
            )
            .bind(&job.kind)
            .bind(&job.dedupe_key)
            .bind(Json(&job.payload))
            .bind(job.run_after)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn claim_jobs(&mut self, owner: &str, now: Millis, lease_ms: i64, limit: u32) -> Result<Vec<Job>> {
        // SKIP LOCKED: concurrent claimers on other replicas take other rows instead of waiting.
        let rows = sqlx::query(
            "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM jobs WHERE run_after <= $3 AND (lease_until IS NULL OR lease_until < $3)
                          ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING id, kind, payload, attempts, lease_until",
        )
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                let Json(payload) = row.try_get("payload")?;
                Ok(Job {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    payload,
                    attempts: i64::from(row.try_get::<i32, _>("attempts")?),
                    lease_until: row.try_get("lease_until")?,
                })
            })
            .collect()
    }

    async fn complete_job(&mut self, id: i64, owner: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM jobs WHERE id = $1 AND lease_owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_job(&mut self, id: i64, owner: &str, retry_at: Millis) -> Result<()> {
        // Back to waiting, unless an equal job is already waiting (then this one is redundant).
        let waiting: Option<i64> = sqlx::query_scalar(
            "SELECT w.id FROM jobs j JOIN jobs w ON w.dedupe_key = j.dedupe_key AND w.lease_owner IS NULL
             WHERE j.id = $1 AND w.id <> j.id",
        )
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        if waiting.is_some() {
            sqlx::query("DELETE FROM jobs WHERE id = $1 AND lease_owner = $2")
                .bind(id)
                .bind(owner)
                .execute(&mut *self.tx)
                .await?;
        } else {
            sqlx::query("UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_after = $3 WHERE id = $1 AND lease_owner = $2")
                .bind(id)
                .bind(owner)
                .bind(retry_at)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn count_jobs(&mut self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&mut *self.tx).await?;
        Ok(n.max(0) as u64)
    }

    async fn search(&mut self, plan: &SearchPlan) -> Result<Vec<Entity>> {
        let sql = query_sql::search(Dialect::Postgres, plan)?;
        let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
        rows.iter().map(entity_from_row).collect()
    }

    async fn aggregate(&mut self, plan: &AggregatePlan) -> Result<AggregateResult> {
        query_sql::run_aggregate(self, Dialect::Postgres, plan).await
    }

    async fn acquire_singleton(
        &mut self,
        name: &str,
        owner: &str,
        now: Millis,
        lease_ms: i64,
    ) -> Result<Option<Value>> {
        let state: Option<Json<Value>> = sqlx::query_scalar(
            "INSERT INTO singletons (name, owner, lease_until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
             WHERE singletons.lease_until < $4 OR singletons.owner = excluded.owner
             RETURNING state",
        )
        .bind(name)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(state.map(|Json(v)| v))
    }

    async fn save_singleton(&mut self, name: &str, owner: &str, state: &Value) -> Result<bool> {
        let done = sqlx::query("UPDATE singletons SET state = $1 WHERE name = $2 AND owner = $3")
            .bind(Json(state))
            .bind(name)
            .bind(owner)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn singleton_owner(&mut self, name: &str) -> Result<Option<(String, Millis)>> {
        let row = sqlx::query("SELECT owner, lease_until FROM singletons WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok((r.try_get("owner")?, r.try_get("lease_until")?))).transpose()
    }

    async fn record_expiries(&mut self, expiries: &[(String, String, String, Millis)]) -> Result<Vec<bool>> {
        let mut fresh = Vec::with_capacity(expiries.len());
        for (blueprint, identifier, property, at) in expiries {
            let done = sqlx::query(
                "INSERT INTO timer_expiries (blueprint, identifier, property, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(blueprint)
            .bind(identifier)
            .bind(property)
            .bind(at)
            .execute(&mut *self.tx)
            .await?;
            fresh.push(done.rows_affected() > 0);
        }
        Ok(fresh)
    }

    async fn publish(&mut self, event: &ChangeEvent) -> Result<()> {
        // NOTIFY is transactional: delivered to every listening replica at commit, never before.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(to_json(event)?)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    // ---- actions, runs, secrets, runner tokens, settings ----
    async fn actions(&mut self) -> Result<Vec<ActionRecord>> {
        crate::actions::postgres::actions(&mut self.tx).await
    }

    async fn action(&mut self, identifier: &str) -> Result<Option<ActionRecord>> {
        crate::actions::postgres::action(&mut self.tx, identifier).await
    }

    async fn put_action(&mut self, record: &ActionRecord, insert_only: bool) -> Result<()> {
        crate::actions::postgres::put_action(&mut self.tx, record, insert_only).await
    }

    async fn delete_action(&mut self, identifier: &str) -> Result<bool> {
        crate::actions::postgres::delete_action(&mut self.tx, identifier).await
    }

    async fn insert_run(&mut self, run: &Run, labels: Option<&[String]>) -> Result<i64> {
        crate::actions::postgres::insert_run(&mut self.tx, run, labels).await
    }

    async fn run(&mut self, id: &str, lock: bool) -> Result<Option<Run>> {
        crate::actions::postgres::run(&mut self.tx, id, lock).await
    }

    async fn update_run(&mut self, run: &Run) -> Result<()> {
        crate::actions::postgres::update_run(&mut self.tx, run).await
    }

    async fn list_runs(&mut self, filter: &RunFilter, limit: u32) -> Result<Vec<(i64, Run)>> {
        crate::actions::postgres::list_runs(&mut self.tx, filter, limit).await
    }

    async fn claimable_run(&mut self, labels: &[String]) -> Result<Option<Run>> {
        crate::actions::postgres::claimable_run(&mut self.tx, labels, self.writable).await
    }

    async fn lost_runs(&mut self, now: Millis, limit: u32) -> Result<Vec<Run>> {
        crate::actions::postgres::lost_runs(&mut self.tx, now, limit).await
    }

    async fn lease_run(&mut self, id: &str, owner: &str, until: Millis, only_if_owner: bool) -> Result<bool> {
        crate::actions::postgres::lease_run(&mut self.tx, id, owner, until, only_if_owner).await
    }

    async fn run_lease(&mut self, id: &str) -> Result<Option<(String, Millis)>> {
        crate::actions::postgres::run_lease(&mut self.tx, id).await
    }

    async fn append_run_logs(&mut self, run_id: &str, logs: &[NewRunLog]) -> Result<()> {
        crate::actions::postgres::append_run_logs(&mut self.tx, run_id, logs).await
    }

    async fn run_logs(&mut self, run_id: &str, after: i64, limit: u32) -> Result<Vec<RunLog>> {
        crate::actions::postgres::run_logs(&mut self.tx, run_id, after, limit).await
    }

    async fn link_run_entities(&mut self, run_id: &str, changes: &[(EntityRef, &str)], at: Millis) -> Result<()> {
        crate::actions::postgres::link_run_entities(&mut self.tx, run_id, changes, at).await
    }

    async fn run_entities(&mut self, run_id: &str) -> Result<Vec<(EntityRef, String)>> {
        crate::actions::postgres::run_entities(&mut self.tx, run_id).await
    }

    async fn entity_runs(&mut self, entity: &EntityRef, limit: u32) -> Result<Vec<(String, String)>> {
        crate::actions::postgres::entity_runs(&mut self.tx, entity, limit).await
    }

    async fn put_secret(&mut self, name: &str, sealed: &[u8], at: Millis, by: &str) -> Result<bool> {
        crate::actions::postgres::put_secret(&mut self.tx, name, sealed, at, by).await
    }

    async fn secret(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        crate::actions::postgres::secret(&mut self.tx, name).await
    }

    async fn secrets(&mut self) -> Result<Vec<SecretMeta>> {
        crate::actions::postgres::secrets(&mut self.tx).await
    }

    async fn delete_secret(&mut self, name: &str) -> Result<bool> {
        crate::actions::postgres::delete_secret(&mut self.tx, name).await
    }

    async fn insert_runner_token(&mut self, token: &RunnerToken) -> Result<()> {
        crate::actions::postgres::insert_runner_token(&mut self.tx, token).await
    }

    async fn runner_token(&mut self, token_sha256: &str) -> Result<Option<RunnerToken>> {
        crate::actions::postgres::runner_token(&mut self.tx, token_sha256).await
    }

    async fn runner_tokens(&mut self) -> Result<Vec<RunnerToken>> {
        crate::actions::postgres::runner_tokens(&mut self.tx).await
    }

    async fn revoke_runner_token(&mut self, id: &str, at: Millis) -> Result<bool> {
        crate::actions::postgres::revoke_runner_token(&mut self.tx, id, at).await
    }

    async fn touch_runner_token(&mut self, id: &str, at: Millis) -> Result<()> {
        crate::actions::postgres::touch_runner_token(&mut self.tx, id, at).await
    }

    async fn setting(&mut self, name: &str) -> Result<Option<String>> {
        crate::actions::postgres::setting(&mut self.tx, name).await
    }

    async fn setting_or_insert(&mut self, name: &str, value: &str) -> Result<String> {
        crate::actions::postgres::setting_or_insert(&mut self.tx, name, value).await
    }

    async fn account(&mut self, user: &str) -> Result<Option<Account>> {
        crate::identity::postgres::account(&mut self.tx, user).await
    }

    async fn accounts(&mut self) -> Result<Vec<Account>> {
        crate::identity::postgres::accounts(&mut self.tx).await
    }

    async fn put_account(&mut self, account: &Account) -> Result<()> {
        crate::identity::postgres::put_account(&mut self.tx, account).await
    }

    async fn insert_session(&mut self, session: &Session) -> Result<()> {
        crate::identity::postgres::insert_session(&mut self.tx, session).await
    }

    async fn session(&mut self, id_sha256: &str) -> Result<Option<Session>> {
        crate::identity::postgres::session(&mut self.tx, id_sha256).await
    }

    async fn touch_session(&mut self, id_sha256: &str, at: Millis) -> Result<()> {
        crate::identity::postgres::touch_session(&mut self.tx, id_sha256, at).await
    }

    async fn delete_session(&mut self, id_sha256: &str) -> Result<bool> {
        crate::identity::postgres::delete_session(&mut self.tx, id_sha256).await
    }

    async fn delete_sessions_of(&mut self, user: &str) -> Result<u64> {
        crate::identity::postgres::delete_sessions_of(&mut self.tx, user).await
    }

    async fn insert_api_token(&mut self, token: &ApiToken) -> Result<()> {
        crate::identity::postgres::insert_api_token(&mut self.tx, token).await
    }

    async fn api_token(&mut self, token_sha256: &str) -> Result<Option<ApiToken>> {
        crate::identity::postgres::api_token(&mut self.tx, token_sha256).await
    }

    async fn api_tokens(&mut self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        crate::identity::postgres::api_tokens(&mut self.tx, user).await
    }

    async fn revoke_api_token(&mut self, id: &str, at: Millis) -> Result<bool> {
        crate::identity::postgres::revoke_api_token(&mut self.tx, id, at).await
    }

    async fn touch_api_token(&mut self, id: &str, at: Millis) -> Result<()> {
        crate::identity::postgres::touch_api_token(&mut self.tx, id, at).await
    }

    async fn permissions(&mut self, resource: &str) -> Result<Option<Value>> {
        crate::identity::postgres::permissions(&mut self.tx, resource).await
    }

    async fn put_permissions(&mut self, resource: &str, document: Option<&Value>, at: Millis, by: &str) -> Result<()> {
        crate::identity::postgres::put_permissions(&mut self.tx, resource, document, at, by).await
    }

    async fn append_audit(&mut self, entries: &[AuditEntry]) -> Result<()> {
        crate::audit::postgres::append_audit(&mut self.tx, entries, self.audit_key.as_ref()).await
    }

    async fn audit_head(&mut self) -> Result<(i64, String)> {
        crate::audit::postgres::audit_head(&mut self.tx).await
    }

    async fn audit_records(&mut self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>> {
        crate::audit::postgres::audit_records(&mut self.tx, filter, limit).await
    }

    async fn audit_chain(&mut self, after: i64, limit: u32) -> Result<Vec<StoredRecord>> {
        crate::audit::postgres::audit_chain(&mut self.tx, after, limit).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// The entity columns of a multi-row write, one array per column (bound to `UNNEST`).
#[derive(Default)]
struct EntityColumns {
    blueprint: Vec<String>,
    identifier: Vec<String>,
    title: Vec<Option<String>>,
    icon: Vec<Option<String>>,
    team: Vec<String>,
    properties: Vec<String>,
    relations: Vec<String>,
    scorecards: Vec<String>,
    diagnostics: Vec<String>,
    version: Vec<i64>,
    created_at: Vec<i64>,
    created_by: Vec<String>,
    updated_at: Vec<i64>,
    updated_by: Vec<String>,
}

impl EntityColumns {
    fn push(&mut self, e: &Entity) -> Result<()> {
        self.blueprint.push(e.blueprint.clone());
        self.identifier.push(e.identifier.clone());
        self.title.push(e.title.clone());
        self.icon.push(e.icon.clone());
        self.team.push(to_json(&e.team)?);
        self.properties.push(to_json(&e.properties)?);
        self.relations.push(to_json(&e.relations)?);
        self.scorecards.push(to_json(&e.scorecards)?);
        self.diagnostics.push(to_json(&e.diagnostics)?);
        self.version.push(e.version);
        self.created_at.push(e.created_at);
        self.created_by.push(e.created_by.clone());
        self.updated_at.push(e.updated_at);
        self.updated_by.push(e.updated_by.clone());
        Ok(())
    }
}

fn bind(
    mut query: sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>,
    params: Vec<Param>,
) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
    for param in params {
        query = match param {
            Param::Text(s) => query.bind(s),
            Param::Int(i) => query.bind(i),
            Param::Float(f) => query.bind(f),
            Param::Bool(b) => query.bind(b),
        };
    }
    query
}

#[async_trait::async_trait]
impl SqlRunner for PgTx {
    async fn floats(&mut self, sql: Sql) -> Result<Vec<Option<f64>>> {
        let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
        rows.iter().map(|row| Ok(row.try_get::<Option<f64>, _>("value")?)).collect()
    }

    async fn groups(&mut self, sql: Sql) -> Result<Vec<(Option<String>, i64)>> {
        let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
        rows.iter().map(|row| Ok((row.try_get("group_key")?, row.try_get("n")?))).collect()
    }
}
