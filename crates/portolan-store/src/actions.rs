//! Storage of actions, runs, run logs, secrets, runner tokens and settings. The SQL is the same on
//! both backends (sqlx reads `$N` parameters on SQLite too), so one macro writes the queries for
//! each, and only row locking differs: PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, SQLite has
//! one writer and needs nothing.

use portolan_model::Millis;
use portolan_model::action::Action;
use portolan_model::run::RunStatus;

/// An action as stored, with who made and last changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRecord {
    pub action: Action,
    pub created_at: Millis,
    pub created_by: String,
    pub updated_at: Millis,
    pub updated_by: String,
}

/// Which runs to list; newest first, before `before` (a run's `seq`) when given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub action: Option<String>,
    pub blueprint: Option<String>,
    pub entity: Option<String>,
    pub created_by: Option<String>,
    /// Any of these statuses (all when empty).
    pub statuses: Vec<RunStatus>,
    pub before: Option<i64>,
    /// Only runs this user requested or whose entity one of these teams owns.
    pub visible_to: Option<(String, Vec<String>)>,
}

/// A log line to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRunLog {
    pub at: Millis,
    pub stream: String,
    pub message: String,
}

/// A secret's name and history; its value never leaves the store but to the server's decryption.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretMeta {
    pub name: String,
    pub created_at: Millis,
    pub created_by: String,
    pub updated_at: Millis,
    pub updated_by: String,
}

/// A runner's credential: it may claim runs whose labels it has.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerToken {
    pub id: String,
    pub name: String,
    pub token_sha256: String,
    pub labels: Vec<String>,
    pub created_at: Millis,
    pub created_by: String,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// How an entity was affected by a run.
pub const CREATED: &str = "created";
pub const UPDATED: &str = "updated";
pub const DELETED: &str = "deleted";

/// Writes the query functions for one backend: `$db` the database, `$lock` what a claiming
/// select appends.
macro_rules! queries {
    ($db:ty, $lock:literal) => {
        use portolan_model::action::Action;
        use portolan_model::run::{Run, RunLog};
        use portolan_model::{EntityRef, Millis};
        use sqlx::{AssertSqlSafe, Row, Transaction};

        use crate::actions::{ActionRecord, NewRunLog, RunFilter, RunnerToken, SecretMeta};
        use crate::{Result, StoreError};

        type Tx = Transaction<'static, $db>;
        type DbRow = <$db as sqlx::Database>::Row;

        fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
            serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
        }

        fn text<T: serde::Serialize>(value: &T) -> Result<String> {
            serde_json::to_string(value).map_err(|e| StoreError::Other(e.to_string()))
        }

        fn action_from_row(row: &DbRow) -> Result<ActionRecord> {
            Ok(ActionRecord {
                action: Action::from_stored(&row.try_get::<String, _>("document")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
                updated_at: row.try_get("updated_at")?,
                updated_by: row.try_get("updated_by")?,
            })
        }

        fn run_from_row(row: &DbRow) -> Result<(i64, Run)> {
            Ok((row.try_get("seq")?, parse(&row.try_get::<String, _>("document")?)?))
        }

        pub async fn actions(tx: &mut Tx) -> Result<Vec<ActionRecord>> {
            let rows = sqlx::query("SELECT * FROM actions ORDER BY identifier").fetch_all(&mut **tx).await?;
            rows.iter().map(action_from_row).collect()
        }

        pub async fn action(tx: &mut Tx, identifier: &str) -> Result<Option<ActionRecord>> {
            let row = sqlx::query("SELECT * FROM actions WHERE identifier = $1")
                .bind(identifier)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(action_from_row).transpose()
        }

        pub async fn put_action(tx: &mut Tx, record: &ActionRecord, insert_only: bool) -> Result<()> {
            let sql = if insert_only {
                "INSERT INTO actions (identifier, document, created_at, created_by, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6)"
            } else {
                "INSERT INTO actions (identifier, document, created_at, created_by, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (identifier) DO UPDATE SET document = excluded.document,
                    updated_at = excluded.updated_at, updated_by = excluded.updated_by"
            };
            sqlx::query(sql)
                .bind(&record.action.identifier)
                .bind(text(&record.action)?)
                .bind(record.created_at)
                .bind(&record.created_by)
                .bind(record.updated_at)
                .bind(&record.updated_by)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        pub async fn delete_action(tx: &mut Tx, identifier: &str) -> Result<bool> {
            let done =
                sqlx::query("DELETE FROM actions WHERE identifier = $1").bind(identifier).execute(&mut **tx).await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn insert_run(tx: &mut Tx, run: &Run, labels: Option<&[String]>) -> Result<i64> {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO runs (id, action, blueprint, entity, status, backend, created_by, document)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
            )
            .bind(&run.id)
            .bind(&run.action)
            .bind(&run.blueprint)
            .bind(&run.entity)
            .bind(run.status.as_str())
            .bind(run.backend.as_str())
            .bind(&run.trigger.by)
            .bind(text(run)?)
            .fetch_one(&mut **tx)
            .await?;
            for label in labels.unwrap_or_default() {
                sqlx::query("INSERT INTO run_labels (run_id, label) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(&run.id)
                    .bind(label)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(seq)
        }

        pub async fn run(tx: &mut Tx, id: &str, lock: bool) -> Result<Option<Run>> {
            // SQLite has no FOR UPDATE: its single writer already serialises writes.
            let sql = if lock && !$lock.is_empty() {
                "SELECT seq, document FROM runs WHERE id = $1 FOR UPDATE"
            } else {
                "SELECT seq, document FROM runs WHERE id = $1"
            };
            let row = sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?;
            Ok(row.as_ref().map(run_from_row).transpose()?.map(|(_, run)| run))
        }

        /// Stores the run's new state; a run that is not in progress holds no lease.
        pub async fn update_run(tx: &mut Tx, run: &Run) -> Result<()> {
            sqlx::query(
                "UPDATE runs SET status = $2, document = $3,
                    lease_owner = CASE WHEN $2 = 'IN_PROGRESS' THEN lease_owner END,
                    lease_until = CASE WHEN $2 = 'IN_PROGRESS' THEN lease_until END
                 WHERE id = $1",
            )
            .bind(&run.id)
            .bind(run.status.as_str())
            .bind(text(run)?)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        pub async fn list_runs(tx: &mut Tx, filter: &RunFilter, limit: u32) -> Result<Vec<(i64, Run)>> {
            let mut sql = String::from("SELECT seq, document FROM runs WHERE 1 = 1");
            let mut binds: Vec<String> = Vec::new();
            let mut condition = |column: &str, value: &Option<String>, sql: &mut String| {
                if let Some(value) = value {
                    binds.push(value.clone());
                    sql.push_str(&format!(" AND {column} = ${}", binds.len()));
                }
            };
            condition("action", &filter.action, &mut sql);
            condition("blueprint", &filter.blueprint, &mut sql);
            condition("entity", &filter.entity, &mut sql);
            condition("created_by", &filter.created_by, &mut sql);
            if !filter.statuses.is_empty() {
                let mut marks = Vec::new();
                for status in &filter.statuses {
                    binds.push(status.as_str().to_string());
                    marks.push(format!("${}", binds.len()));
                }
                sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
            }
            if let Some((user, teams)) = &filter.visible_to {
                binds.push(user.clone());
                let mut visible = format!(" AND (created_by = ${}", binds.len());
                if !teams.is_empty() {
                    let mut marks = Vec::new();
                    for team in teams {
                        binds.push(team.clone());
                        marks.push(format!("${}", binds.len()));
                    }
                    visible.push_str(&format!(
                        " OR EXISTS (SELECT 1 FROM entities e JOIN entity_references r ON r.source_id = e.id
                           WHERE e.blueprint = runs.blueprint AND e.identifier = runs.entity
                           AND r.via = '$team' AND r.target_identifier IN ({}))",
                        marks.join(", ")
                    ));
                }
                sql.push_str(&visible);
                sql.push(')');
            }
            if filter.before.is_some() {
                sql.push_str(&format!(" AND seq < ${}", binds.len() + 1));
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for value in binds {
                query = query.bind(value);
            }
            if let Some(before) = filter.before {
                query = query.bind(before);
            }
            let rows = query.fetch_all(&mut **tx).await?;
            rows.iter().map(run_from_row).collect()
        }

        /// The oldest queued runner run that needs no label outside `labels`, locked for the
        /// claimer (skipping runs another claimer holds).
        /// `lock`: claim it (a write transaction); otherwise only look (a read transaction).
        pub async fn claimable_run(tx: &mut Tx, labels: &[String], lock: bool) -> Result<Option<Run>> {
            let marks: Vec<String> = (1..=labels.len()).map(|i| format!("${i}")).collect();
            let outside =
                if labels.is_empty() { String::new() } else { format!(" AND l.label NOT IN ({})", marks.join(", ")) };
            let sql = format!(
                "SELECT seq, document FROM runs r WHERE r.status = 'QUEUED' AND r.backend = 'RUNNER'
                 AND NOT EXISTS (SELECT 1 FROM run_labels l WHERE l.run_id = r.id{outside})
                 ORDER BY r.seq LIMIT 1{}",
                if lock { $lock } else { "" }
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for label in labels {
                query = query.bind(label);
            }
            let row = query.fetch_optional(&mut **tx).await?;
            Ok(row.as_ref().map(run_from_row).transpose()?.map(|(_, run)| run))
        }

        /// Runs in progress whose runner lease ran out before `now`, locked for the caller.
        pub async fn lost_runs(tx: &mut Tx, now: Millis, limit: u32) -> Result<Vec<Run>> {
            let rows = sqlx::query(concat!(
                "SELECT seq, document FROM runs WHERE status = 'IN_PROGRESS' AND lease_until < $1
                 ORDER BY seq LIMIT $2",
                $lock
            ))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?;
            rows.iter().map(|row| Ok(run_from_row(row)?.1)).collect()
        }

        /// Leases a run to `owner` until `until`; with `only_if_owner`, only if it already holds it.
        pub async fn lease_run(tx: &mut Tx, id: &str, owner: &str, until: Millis, only_if_owner: bool) -> Result<bool> {
            let sql = if only_if_owner {
                "UPDATE runs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'IN_PROGRESS'"
            } else {
                "UPDATE runs SET lease_owner = $2, lease_until = $3 WHERE id = $1"
            };
            let done = sqlx::query(sql).bind(id).bind(owner).bind(until).execute(&mut **tx).await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn run_lease(tx: &mut Tx, id: &str) -> Result<Option<(String, Millis)>> {
            let row = sqlx::query("SELECT lease_owner, lease_until FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let owner: Option<String> = row.try_get("lease_owner")?;
            let until: Option<Millis> = row.try_get("lease_until")?;
            Ok(owner.zip(until))
        }

        pub async fn append_run_logs(tx: &mut Tx, run_id: &str, logs: &[NewRunLog]) -> Result<()> {
            for log in logs {
                sqlx::query("INSERT INTO run_logs (run_id, at, stream, message) VALUES ($1, $2, $3, $4)")
                    .bind(run_id)
                    .bind(log.at)
                    .bind(&log.stream)
                    .bind(&log.message)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        pub async fn run_logs(tx: &mut Tx, run_id: &str, after: i64, limit: u32) -> Result<Vec<RunLog>> {
            let rows = sqlx::query(
                "SELECT seq, at, stream, message FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(run_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(RunLog {
                        seq: row.try_get("seq")?,
                        at: row.try_get("at")?,
                        stream: row.try_get("stream")?,
                        message: row.try_get("message")?,
                    })
                })
                .collect()
        }

        /// Records what a run did to entities; a later change replaces an earlier one, except
        /// that an entity the run created stays `created` when the run then updates it.
        pub async fn link_run_entities(tx: &mut Tx, run_id: &str, changes: &[(EntityRef, &str)], at: Millis) -> Result<()> {
            for (entity, change) in changes {
                sqlx::query(
                    "INSERT INTO run_entities (run_id, blueprint, identifier, change, at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (run_id, blueprint, identifier) DO UPDATE SET at = excluded.at,
                        change = CASE WHEN run_entities.change = 'created' AND excluded.change = 'updated'
                                      THEN 'created' ELSE excluded.change END",
                )
                .bind(run_id)
                .bind(&entity.blueprint)
                .bind(&entity.identifier)
                .bind(*change)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        pub async fn run_entities(tx: &mut Tx, run_id: &str) -> Result<Vec<(EntityRef, String)>> {
            let rows = sqlx::query(
                "SELECT blueprint, identifier, change FROM run_entities WHERE run_id = $1 ORDER BY at, blueprint, identifier",
            )
            .bind(run_id)
            .fetch_all(&mut **tx)
            .await?;
            rows.iter()
                .map(|row| {
                    let entity = EntityRef { blueprint: row.try_get("blueprint")?, identifier: row.try_get("identifier")? };
                    Ok((entity, row.try_get("change")?))
                })
                .collect()
        }

        pub async fn entity_runs(tx: &mut Tx, entity: &EntityRef, limit: u32) -> Result<Vec<(String, String)>> {
            let rows = sqlx::query(
                "SELECT run_id, change FROM run_entities WHERE blueprint = $1 AND identifier = $2
                 ORDER BY at DESC LIMIT $3",
            )
            .bind(&entity.blueprint)
            .bind(&entity.identifier)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?;
            rows.iter().map(|row| Ok((row.try_get("run_id")?, row.try_get("change")?))).collect()
        }

        pub async fn put_secret(tx: &mut Tx, name: &str, sealed: &[u8], at: Millis, by: &str) -> Result<bool> {
            let existed: Option<String> = sqlx::query_scalar("SELECT name FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?;
            sqlx::query(
                "INSERT INTO secrets (name, sealed, created_at, created_by, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at,
                    updated_by = excluded.updated_by",
            )
            .bind(name)
            .bind(sealed)
            .bind(at)
            .bind(by)
            .execute(&mut **tx)
            .await?;
            Ok(existed.is_none())
        }

        pub async fn secret(tx: &mut Tx, name: &str) -> Result<Option<Vec<u8>>> {
            Ok(sqlx::query_scalar("SELECT sealed FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?)
        }

        pub async fn secrets(tx: &mut Tx) -> Result<Vec<SecretMeta>> {
            let rows = sqlx::query("SELECT name, created_at, created_by, updated_at, updated_by FROM secrets ORDER BY name")
                .fetch_all(&mut **tx)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(SecretMeta {
                        name: row.try_get("name")?,
                        created_at: row.try_get("created_at")?,
                        created_by: row.try_get("created_by")?,
                        updated_at: row.try_get("updated_at")?,
                        updated_by: row.try_get("updated_by")?,
                    })
                })
                .collect()
        }

        pub async fn delete_secret(tx: &mut Tx, name: &str) -> Result<bool> {
            let done = sqlx::query("DELETE FROM secrets WHERE name = $1").bind(name).execute(&mut **tx).await?;
            Ok(done.rows_affected() > 0)
        }

        fn runner_token_from_row(row: &DbRow) -> Result<RunnerToken> {
            Ok(RunnerToken {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                token_sha256: row.try_get("token_sha256")?,
                labels: parse(&row.try_get::<String, _>("labels")?)?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
                last_used_at: row.try_get("last_used_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        pub async fn insert_runner_token(tx: &mut Tx, token: &RunnerToken) -> Result<()> {
            sqlx::query(
                "INSERT INTO runner_tokens (id, name, token_sha256, labels, created_at, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&token.id)
            .bind(&token.name)
            .bind(&token.token_sha256)
            .bind(text(&token.labels)?)
            .bind(token.created_at)
            .bind(&token.created_by)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        pub async fn runner_token(tx: &mut Tx, token_sha256: &str) -> Result<Option<RunnerToken>> {
            let row = sqlx::query("SELECT * FROM runner_tokens WHERE token_sha256 = $1")
                .bind(token_sha256)
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(runner_token_from_row).transpose()
        }

        pub async fn runner_tokens(tx: &mut Tx) -> Result<Vec<RunnerToken>> {
            let rows = sqlx::query("SELECT * FROM runner_tokens ORDER BY created_at, id").fetch_all(&mut **tx).await?;
            rows.iter().map(runner_token_from_row).collect()
        }

        pub async fn revoke_runner_token(tx: &mut Tx, id: &str, at: Millis) -> Result<bool> {
            let done = sqlx::query("UPDATE runner_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn touch_runner_token(tx: &mut Tx, id: &str, at: Millis) -> Result<()> {
            sqlx::query("UPDATE runner_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        pub async fn setting(tx: &mut Tx, name: &str) -> Result<Option<String>> {
            Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?)
        }

        /// The stored value of a setting, storing `value` first if there is none.
        pub async fn setting_or_insert(tx: &mut Tx, name: &str, value: &str) -> Result<String> {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(value)
                .execute(&mut **tx)
                .await?;
            Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_one(&mut **tx).await?)
        }
    };
}

pub(crate) mod sqlite {
    queries!(sqlx::Sqlite, "");
}

pub(crate) mod postgres {
    queries!(sqlx::Postgres, " FOR UPDATE SKIP LOCKED");
}
