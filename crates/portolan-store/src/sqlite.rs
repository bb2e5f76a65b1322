//! The embedded default: SQLite in WAL mode in a data directory. One writer connection serialises
//! writes inside the process (SQLite allows one writer at a time anyway, and queueing in the pool is
//! cheaper than retrying on SQLITE_BUSY); a small pool of read-only connections serves reads
//! concurrently from WAL snapshots.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use portolan_model::run::{Run, RunLog};
use portolan_model::{Blueprint, Entity, EntityRef, Millis, Reference};
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use crate::query_sql::{self, AggregatePlan, AggregateResult, Dialect, Param, SearchPlan, Sql, SqlRunner};
use tokio::sync::broadcast;

use portolan_model::audit::{AuditEntry, AuditKey, AuditRecord, StoredRecord};

use crate::{
    Account, ActionRecord, ApiToken, AuditFilter, AuditKeySlot, BlueprintRecord, CHANGE_BUFFER, ChangeEvent,
    EntityWrite, Job, NewJob, NewRunLog, Referrer, Result, RunFilter, RunnerToken, ScorecardRecord, SecretMeta,
    Session, Store, StoreError, Tx,
};

/// The file inside the data directory that holds the database.
pub const DATABASE_FILE: &str = "portolan.db";

/// Write transactions take the database's write lock when they begin, waiting up to the busy
/// timeout for another process (`portolan admin` beside a server) to finish. A deferred `BEGIN`
/// would take it at the first write instead, and SQLite answers SQLITE_BUSY at once, without
/// waiting, when that upgrade meets another writer or a snapshot a writer has moved past.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// SQLite allows 32766 bound parameters per statement; lists and multi-row writes stay well below.
const IN_CHUNK: usize = 500;
const ENTITY_ROWS_PER_STATEMENT: usize = 500;
const REFERENCE_ROWS_PER_STATEMENT: usize = 2_000;

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// One process owns a SQLite database, so change events stay in process.
    changes: broadcast::Sender<ChangeEvent>,
    audit_key: AuditKeySlot,
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Other(format!("migration failed: {e}")))?;
        let changes = broadcast::channel(CHANGE_BUFFER).0;
        // A database from before a change to the indexing gets its indexes now.
        let mut indexing = SqliteTx {
            tx: writer.begin_with(BEGIN_WRITE).await?,
            events: Vec::new(),
            changes: changes.clone(),
            audit_key: None,
        };
        indexing.sync_property_indexes().await?;
        indexing.tx.commit().await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self { writer, readers, changes, audit_key: AuditKeySlot::default() })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn read(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx {
            tx: self.readers.begin().await?,
            events: Vec::new(),
            changes: self.changes.clone(),
            audit_key: None,
        }))
    }

    async fn write(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx {
            tx: self.writer.begin_with(BEGIN_WRITE).await?,
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
}

struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    /// Published when the transaction commits.
    events: Vec<ChangeEvent>,
    changes: broadcast::Sender<ChangeEvent>,
    /// Signs the audit records this transaction appends.
    audit_key: Option<AuditKey>,
}

const ENTITY_COLUMNS: &str = "blueprint, identifier, title, icon, team, properties, relations, scorecards, diagnostics, version, \
     created_at, created_by, updated_at, updated_by";

fn entity_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Entity> {
    let team: Vec<String> = parse_json(row.try_get("team")?)?;
    let properties: Map<String, Value> = parse_json(row.try_get("properties")?)?;
    let relations: Map<String, Value> = parse_json(row.try_get("relations")?)?;
    let scorecards: Map<String, Value> = parse_json(row.try_get("scorecards")?)?;
    let diagnostics: Map<String, Value> = parse_json(row.try_get("diagnostics")?)?;
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

fn blueprint_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<BlueprintRecord> {
    let blueprint: Blueprint = parse_json(row.try_get("document")?)?;
    Ok(BlueprintRecord {
        blueprint,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(e.to_string()))
}

/// `?, ?, ?` for an IN list of `n` bound values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl SqliteTx {
    /// Inserts a blueprint; with `upsert`, replaces the one with its identifier (keeping its
    /// creation stamp). Without, an existing one is a conflict.
    async fn write_blueprint(&mut self, record: &BlueprintRecord, upsert: bool) -> Result<()> {
        let sql = if upsert {
            "INSERT INTO blueprints (identifier, document, created_at, created_by, updated_at, updated_by)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (identifier) DO UPDATE SET document = excluded.document,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by"
        } else {
            "INSERT INTO blueprints (identifier, document, created_at, created_by, updated_at, updated_by)
             VALUES (?, ?, ?, ?, ?, ?)"
        };
        sqlx::query(sql)
            .bind(&record.blueprint.identifier)
            .bind(to_json(&record.blueprint)?)
            .bind(record.created_at)
            .bind(&record.created_by)
            .bind(record.updated_at)
            .bind(&record.updated_by)
            .execute(&mut *self.tx)
            .await?;
        self.sync_property_indexes().await
    }

    /// Creates and drops property indexes to match the blueprints (`query_sql::property_index_changes`).
    async fn sync_property_indexes(&mut self) -> Result<()> {
        let blueprints: Vec<_> = self.blueprints().await?.into_iter().map(|r| r.blueprint).collect();
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entities' AND substr(name, 1, length(?1)) = ?1",
        )
        .bind(query_sql::PROPERTY_INDEX_PREFIX)
        .fetch_all(&mut *self.tx)
        .await?;
        let changes = query_sql::property_index_changes(Dialect::Sqlite, &blueprints, &existing);
        if changes.is_empty() {
            return Ok(());
        }
        for statement in changes {
            sqlx::query(AssertSqlSafe(statement)).execute(&mut *self.tx).await?;
        }
        // The shape migration 0007 gives the planner for the other entity indexes: without it a
        // new index is guessed to find ten rows per blueprint, and SQLite chose one for every
        // search of a blueprint (a relation search went from milliseconds to seconds).
        let prefix = query_sql::PROPERTY_INDEX_PREFIX;
        sqlx::query("DELETE FROM sqlite_stat1 WHERE tbl = 'entities' AND substr(idx, 1, length(?1)) = ?1")
            .bind(prefix)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat)
             SELECT 'entities', name, '1000000 100000 10000 1' FROM sqlite_master
             WHERE type = 'index' AND tbl_name = 'entities' AND substr(name, 1, length(?1)) = ?1",
        )
        .bind(prefix)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("ANALYZE sqlite_schema").execute(&mut *self.tx).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Tx for SqliteTx {
    async fn blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>> {
        let row = sqlx::query("SELECT * FROM blueprints WHERE identifier = ?")
            .bind(identifier)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(blueprint_from_row).transpose()
    }

    // One writer at a time: whatever a write transaction reads stays as read until it ends.
    async fn lock_blueprint(&mut self, identifier: &str) -> Result<Option<BlueprintRecord>> {
        self.blueprint(identifier).await
    }

    async fn lock_entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>> {
        self.entity(blueprint, identifier).await
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
            sqlx::query("DELETE FROM blueprints WHERE identifier = ?").bind(identifier).execute(&mut *self.tx).await?;
        self.sync_property_indexes().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn entity(&mut self, blueprint: &str, identifier: &str) -> Result<Option<Entity>> {
        let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = ? AND identifier = ?");
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(blueprint).bind(identifier).fetch_optional(&mut *self.tx).await?;
        row.as_ref().map(entity_from_row).transpose()
    }

    async fn entities(&mut self, blueprint: &str, identifiers: &[String]) -> Result<Vec<Entity>> {
        let mut found = Vec::with_capacity(identifiers.len());
        for chunk in identifiers.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = ? AND identifier IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(blueprint);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(&mut *self.tx).await? {
                found.push(entity_from_row(&row)?);
            }
        }
        Ok(found)
    }

    async fn existing(&mut self, blueprint: &str, identifiers: &[String]) -> Result<HashSet<String>> {
        let mut found = HashSet::with_capacity(identifiers.len());
        for chunk in identifiers.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT identifier FROM entities WHERE blueprint = ? AND identifier IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).bind(blueprint);
            for id in chunk {
                query = query.bind(id);
            }
            found.extend(query.fetch_all(&mut *self.tx).await?);
        }
        Ok(found)
    }

    async fn put_entities(&mut self, writes: &[EntityWrite]) -> Result<()> {
        for chunk in writes.chunks(ENTITY_ROWS_PER_STATEMENT) {
            let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO entities ({ENTITY_COLUMNS}) VALUES {rows}
                 ON CONFLICT (blueprint, identifier) DO UPDATE SET
                     title = excluded.title, icon = excluded.icon, team = excluded.team,
                     properties = excluded.properties, relations = excluded.relations, scorecards = excluded.scorecards, diagnostics = excluded.diagnostics,
                     version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                 WHERE entities.version = excluded.version - 1
                 RETURNING id, identifier"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for write in chunk {
                let e = &write.entity;
                query = query
                    .bind(&e.blueprint)
                    .bind(&e.identifier)
                    .bind(&e.title)
                    .bind(&e.icon)
                    .bind(to_json(&e.team)?)
                    .bind(to_json(&e.properties)?)
                    .bind(to_json(&e.relations)?)
                    .bind(to_json(&e.scorecards)?)
                    .bind(to_json(&e.diagnostics)?)
                    .bind(e.version)
                    .bind(e.created_at)
                    .bind(&e.created_by)
                    .bind(e.updated_at)
                    .bind(&e.updated_by);
            }
            let written = query.fetch_all(&mut *self.tx).await?;
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
            for ids_chunk in updated.chunks(IN_CHUNK) {
                let sql =
                    format!("DELETE FROM entity_references WHERE source_id IN ({})", placeholders(ids_chunk.len()));
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for id in ids_chunk {
                    query = query.bind(id);
                }
                query.execute(&mut *self.tx).await?;
            }
            let references: Vec<(i64, &Reference)> = chunk
                .iter()
                .filter_map(|w| ids.get(&w.entity.identifier).map(|id| (*id, &w.references)))
                .flat_map(|(id, refs)| refs.iter().map(move |r| (id, r)))
                .collect();
            for refs_chunk in references.chunks(REFERENCE_ROWS_PER_STATEMENT) {
                let rows = vec!["(?, ?, ?, ?)"; refs_chunk.len()].join(", ");
                let sql = format!(
                    "INSERT INTO entity_references (source_id, via, target_blueprint, target_identifier) VALUES {rows}"
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for (id, r) in refs_chunk {
                    query = query.bind(id).bind(&r.via).bind(&r.target_blueprint).bind(&r.target);
                }
                query.execute(&mut *self.tx).await?;
            }
        }
        Ok(())
    }

    async fn delete_entity(&mut self, blueprint: &str, identifier: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM entities WHERE blueprint = ? AND identifier = ?")
            .bind(blueprint)
            .bind(identifier)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_entities_of(&mut self, blueprint: &str) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM entities WHERE blueprint = ?").bind(blueprint).execute(&mut *self.tx).await?;
        Ok(done.rows_affected())
    }

    async fn list_entities(&mut self, blueprint: &str, after: Option<&str>, limit: u32) -> Result<Vec<Entity>> {
        let sql = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = ? AND identifier > ? ORDER BY identifier LIMIT ?"
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
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entities WHERE blueprint = ?")
            .bind(blueprint)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn referrers(&mut self, target: &EntityRef, limit: u32) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT DISTINCT e.blueprint, e.identifier, r.via
             FROM entity_references r JOIN entities e ON e.id = r.source_id
             WHERE r.target_blueprint = ? AND r.target_identifier = ?
             ORDER BY e.blueprint, e.identifier, r.via LIMIT ?",
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
        let rows = sqlx::query("SELECT * FROM scorecards WHERE blueprint = ? ORDER BY identifier")
            .bind(blueprint)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ScorecardRecord {
                    blueprint: row.try_get("blueprint")?,
                    scorecard: parse_json(row.try_get("document")?)?,
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
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (blueprint, identifier) DO UPDATE SET document = excluded.document,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(&record.blueprint)
        .bind(&record.scorecard.identifier)
        .bind(to_json(&record.scorecard)?)
        .bind(record.created_at)
        .bind(&record.created_by)
        .bind(record.updated_at)
        .bind(&record.updated_by)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn delete_scorecard(&mut self, blueprint: &str, identifier: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM scorecards WHERE blueprint = ? AND identifier = ?")
            .bind(blueprint)
            .bind(identifier)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_scorecard_results(&mut self, blueprint: &str, results: &[(String, Map<String, Value>)]) -> Result<()> {
        for chunk in results.chunks(IN_CHUNK) {
            let rows = vec!["(?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "UPDATE entities SET scorecards = v.column2 FROM (VALUES {rows}) AS v
                 WHERE entities.blueprint = ? AND entities.identifier = v.column1"
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (identifier, scores) in chunk {
                query = query.bind(identifier).bind(to_json(scores)?);
            }
            query.bind(blueprint).execute(&mut *self.tx).await?;
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
            "UPDATE entities SET properties = ?, scorecards = ?, diagnostics = ?
             WHERE blueprint = ? AND identifier = ? AND version = ?",
        )
        .bind(to_json(properties)?)
        .bind(to_json(scorecards)?)
        .bind(to_json(diagnostics)?)
        .bind(&entity.blueprint)
        .bind(&entity.identifier)
        .bind(version)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn enqueue_jobs(&mut self, jobs: &[NewJob]) -> Result<()> {
        for job in jobs {
            sqlx::query(
                "INSERT INTO jobs (kind, dedupe_key, payload, run_after, created_at) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (dedupe_key) WHERE lease_owner IS NULL DO NOTHING",
            )
            .bind(&job.kind)
            .bind(&job.dedupe_key)
            .bind(to_json(&job.payload)?)
            .bind(job.run_after)
            .bind(job.run_after)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn claim_jobs(&mut self, owner: &str, now: Millis, lease_ms: i64, limit: u32) -> Result<Vec<Job>> {
        // One writer at a time: the select and the update cannot interleave with another claim.
        let rows = sqlx::query(
            "UPDATE jobs SET lease_owner = ?, lease_until = ?, attempts = attempts + 1
             WHERE id IN (SELECT id FROM jobs WHERE run_after <= ? AND (lease_until IS NULL OR lease_until < ?)
                          ORDER BY id LIMIT ?)
             RETURNING id, kind, payload, attempts, lease_until",
        )
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Job {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    payload: parse_json(row.try_get("payload")?)?,
                    attempts: row.try_get("attempts")?,
                    lease_until: row.try_get("lease_until")?,
                })
            })
            .collect()
    }

    async fn complete_job(&mut self, id: i64, owner: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM jobs WHERE id = ? AND lease_owner = ?")
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
             WHERE j.id = ? AND w.id <> j.id",
        )
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        if waiting.is_some() {
            sqlx::query("DELETE FROM jobs WHERE id = ? AND lease_owner = ?")
                .bind(id)
                .bind(owner)
                .execute(&mut *self.tx)
                .await?;
        } else {
            sqlx::query("UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_after = ? WHERE id = ? AND lease_owner = ?")
                .bind(retry_at)
                .bind(id)
                .bind(owner)
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
        let sql = query_sql::search(Dialect::Sqlite, plan)?;
        let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
        rows.iter().map(entity_from_row).collect()
    }

    async fn aggregate(&mut self, plan: &AggregatePlan) -> Result<AggregateResult> {
        query_sql::run_aggregate(self, Dialect::Sqlite, plan).await
    }

    async fn acquire_singleton(
        &mut self,
        name: &str,
        owner: &str,
        now: Millis,
        lease_ms: i64,
    ) -> Result<Option<Value>> {
        let state: Option<String> = sqlx::query_scalar(
            "INSERT INTO singletons (name, owner, lease_until) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
             WHERE singletons.lease_until < ?4 OR singletons.owner = excluded.owner
             RETURNING state",
        )
        .bind(name)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&mut *self.tx)
        .await?;
        state.as_deref().map(parse_json).transpose()
    }

    async fn save_singleton(&mut self, name: &str, owner: &str, state: &Value) -> Result<bool> {
        let done = sqlx::query("UPDATE singletons SET state = ? WHERE name = ? AND owner = ?")
            .bind(to_json(state)?)
            .bind(name)
            .bind(owner)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn singleton_owner(&mut self, name: &str) -> Result<Option<(String, Millis)>> {
        let row = sqlx::query("SELECT owner, lease_until FROM singletons WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok((r.try_get("owner")?, r.try_get("lease_until")?))).transpose()
    }

    async fn record_expiries(&mut self, expiries: &[(String, String, String, Millis)]) -> Result<Vec<bool>> {
        let mut fresh = Vec::with_capacity(expiries.len());
        for (blueprint, identifier, property, at) in expiries {
            let done = sqlx::query(
                "INSERT INTO timer_expiries (blueprint, identifier, property, expires_at) VALUES (?, ?, ?, ?)
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
        self.events.push(event.clone());
        Ok(())
    }

    // ---- actions, runs, secrets, runner tokens, settings ----
    async fn actions(&mut self) -> Result<Vec<ActionRecord>> {
        crate::actions::sqlite::actions(&mut self.tx).await
    }

    async fn action(&mut self, identifier: &str) -> Result<Option<ActionRecord>> {
        crate::actions::sqlite::action(&mut self.tx, identifier).await
    }

    async fn put_action(&mut self, record: &ActionRecord, insert_only: bool) -> Result<()> {
        crate::actions::sqlite::put_action(&mut self.tx, record, insert_only).await
    }

    async fn delete_action(&mut self, identifier: &str) -> Result<bool> {
        crate::actions::sqlite::delete_action(&mut self.tx, identifier).await
    }

    async fn insert_run(&mut self, run: &Run, labels: Option<&[String]>) -> Result<i64> {
        crate::actions::sqlite::insert_run(&mut self.tx, run, labels).await
    }

    async fn run(&mut self, id: &str, lock: bool) -> Result<Option<Run>> {
        crate::actions::sqlite::run(&mut self.tx, id, lock).await
    }

    async fn update_run(&mut self, run: &Run) -> Result<()> {
        crate::actions::sqlite::update_run(&mut self.tx, run).await
    }

    async fn list_runs(&mut self, filter: &RunFilter, limit: u32) -> Result<Vec<(i64, Run)>> {
        crate::actions::sqlite::list_runs(&mut self.tx, filter, limit).await
    }

    async fn claimable_run(&mut self, labels: &[String]) -> Result<Option<Run>> {
        crate::actions::sqlite::claimable_run(&mut self.tx, labels, true).await
    }

    async fn lost_runs(&mut self, now: Millis, limit: u32) -> Result<Vec<Run>> {
        crate::actions::sqlite::lost_runs(&mut self.tx, now, limit).await
    }

    async fn lease_run(&mut self, id: &str, owner: &str, until: Millis, only_if_owner: bool) -> Result<bool> {
        crate::actions::sqlite::lease_run(&mut self.tx, id, owner, until, only_if_owner).await
    }

    async fn run_lease(&mut self, id: &str) -> Result<Option<(String, Millis)>> {
        crate::actions::sqlite::run_lease(&mut self.tx, id).await
    }

    async fn append_run_logs(&mut self, run_id: &str, logs: &[NewRunLog]) -> Result<()> {
        crate::actions::sqlite::append_run_logs(&mut self.tx, run_id, logs).await
    }

    async fn run_logs(&mut self, run_id: &str, after: i64, limit: u32) -> Result<Vec<RunLog>> {
        crate::actions::sqlite::run_logs(&mut self.tx, run_id, after, limit).await
    }

    async fn link_run_entities(&mut self, run_id: &str, changes: &[(EntityRef, &str)], at: Millis) -> Result<()> {
        crate::actions::sqlite::link_run_entities(&mut self.tx, run_id, changes, at).await
    }

    async fn run_entities(&mut self, run_id: &str) -> Result<Vec<(EntityRef, String)>> {
        crate::actions::sqlite::run_entities(&mut self.tx, run_id).await
    }

    async fn entity_runs(&mut self, entity: &EntityRef, limit: u32) -> Result<Vec<(String, String)>> {
        crate::actions::sqlite::entity_runs(&mut self.tx, entity, limit).await
    }

    async fn put_secret(&mut self, name: &str, sealed: &[u8], at: Millis, by: &str) -> Result<bool> {
        crate::actions::sqlite::put_secret(&mut self.tx, name, sealed, at, by).await
    }

    async fn secret(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        crate::actions::sqlite::secret(&mut self.tx, name).await
    }

    async fn secrets(&mut self) -> Result<Vec<SecretMeta>> {
        crate::actions::sqlite::secrets(&mut self.tx).await
    }

    async fn delete_secret(&mut self, name: &str) -> Result<bool> {
        crate::actions::sqlite::delete_secret(&mut self.tx, name).await
    }

    async fn insert_runner_token(&mut self, token: &RunnerToken) -> Result<()> {
        crate::actions::sqlite::insert_runner_token(&mut self.tx, token).await
    }

    async fn runner_token(&mut self, token_sha256: &str) -> Result<Option<RunnerToken>> {
        crate::actions::sqlite::runner_token(&mut self.tx, token_sha256).await
    }

    async fn runner_tokens(&mut self) -> Result<Vec<RunnerToken>> {
        crate::actions::sqlite::runner_tokens(&mut self.tx).await
    }

    async fn revoke_runner_token(&mut self, id: &str, at: Millis) -> Result<bool> {
        crate::actions::sqlite::revoke_runner_token(&mut self.tx, id, at).await
    }

    async fn touch_runner_token(&mut self, id: &str, at: Millis) -> Result<()> {
        crate::actions::sqlite::touch_runner_token(&mut self.tx, id, at).await
    }

    async fn setting(&mut self, name: &str) -> Result<Option<String>> {
        crate::actions::sqlite::setting(&mut self.tx, name).await
    }

    async fn setting_or_insert(&mut self, name: &str, value: &str) -> Result<String> {
        crate::actions::sqlite::setting_or_insert(&mut self.tx, name, value).await
    }

    async fn account(&mut self, user: &str) -> Result<Option<Account>> {
        crate::identity::sqlite::account(&mut self.tx, user).await
    }

    async fn accounts(&mut self) -> Result<Vec<Account>> {
        crate::identity::sqlite::accounts(&mut self.tx).await
    }

    async fn put_account(&mut self, account: &Account) -> Result<()> {
        crate::identity::sqlite::put_account(&mut self.tx, account).await
    }

    async fn insert_session(&mut self, session: &Session) -> Result<()> {
        crate::identity::sqlite::insert_session(&mut self.tx, session).await
    }

    async fn session(&mut self, id_sha256: &str) -> Result<Option<Session>> {
        crate::identity::sqlite::session(&mut self.tx, id_sha256).await
    }

    async fn touch_session(&mut self, id_sha256: &str, at: Millis) -> Result<()> {
        crate::identity::sqlite::touch_session(&mut self.tx, id_sha256, at).await
    }

    async fn delete_session(&mut self, id_sha256: &str) -> Result<bool> {
        crate::identity::sqlite::delete_session(&mut self.tx, id_sha256).await
    }

    async fn delete_sessions_of(&mut self, user: &str) -> Result<u64> {
        crate::identity::sqlite::delete_sessions_of(&mut self.tx, user).await
    }

    async fn insert_api_token(&mut self, token: &ApiToken) -> Result<()> {
        crate::identity::sqlite::insert_api_token(&mut self.tx, token).await
    }

    async fn api_token(&mut self, token_sha256: &str) -> Result<Option<ApiToken>> {
        crate::identity::sqlite::api_token(&mut self.tx, token_sha256).await
    }

    async fn api_tokens(&mut self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        crate::identity::sqlite::api_tokens(&mut self.tx, user).await
    }

    async fn revoke_api_token(&mut self, id: &str, at: Millis) -> Result<bool> {
        crate::identity::sqlite::revoke_api_token(&mut self.tx, id, at).await
    }

    async fn touch_api_token(&mut self, id: &str, at: Millis) -> Result<()> {
        crate::identity::sqlite::touch_api_token(&mut self.tx, id, at).await
    }

    async fn permissions(&mut self, resource: &str) -> Result<Option<Value>> {
        crate::identity::sqlite::permissions(&mut self.tx, resource).await
    }

    async fn put_permissions(&mut self, resource: &str, document: Option<&Value>, at: Millis, by: &str) -> Result<()> {
        crate::identity::sqlite::put_permissions(&mut self.tx, resource, document, at, by).await
    }

    async fn append_audit(&mut self, entries: &[AuditEntry]) -> Result<()> {
        crate::audit::sqlite::append_audit(&mut self.tx, entries, self.audit_key.as_ref()).await
    }

    async fn audit_head(&mut self) -> Result<(i64, String)> {
        crate::audit::sqlite::audit_head(&mut self.tx).await
    }

    async fn audit_records(&mut self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>> {
        crate::audit::sqlite::audit_records(&mut self.tx, filter, limit).await
    }

    async fn audit_chain(&mut self, after: i64, limit: u32) -> Result<Vec<StoredRecord>> {
        crate::audit::sqlite::audit_chain(&mut self.tx, after, limit).await
    }

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

fn bind(
    mut query: sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments>,
    params: Vec<Param>,
) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments> {
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
impl SqlRunner for SqliteTx {
    async fn floats(&mut self, sql: Sql) -> Result<Vec<Option<f64>>> {
        let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
        rows.iter().map(|row| Ok(row.try_get::<Option<f64>, _>("value")?)).collect()
    }

    async fn groups(&mut self, sql: Sql) -> Result<Vec<(Option<String>, i64)>> {
        let rows = bind(sqlx::query(AssertSqlSafe(sql.text)), sql.params).fetch_all(&mut *self.tx).await?;
        rows.iter().map(|row| Ok((row.try_get("group_key")?, row.try_get("n")?))).collect()
    }
}
