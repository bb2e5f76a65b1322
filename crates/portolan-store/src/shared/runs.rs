//! Storage of runs, their leases and logs, and the entities they affected.

/// Implements [`crate::RunStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction<'static, $db>` and a field `writable` (claims lock rows only there);
/// `$lock` is what a claiming select appends.
macro_rules! run_store {
    ($tx:ty, $db:ty, $lock:literal) => {
        use portolan_model::run::{Run, RunLog};
        use portolan_model::{EntityRef, Millis};
        use sqlx::{AssertSqlSafe, Row};

        use crate::shared::{parse_json, to_json};
        use crate::{NewRunLog, Result, RunFilter, RunStore};

        type DbRow = <$db as sqlx::Database>::Row;

        fn run_from_row(row: &DbRow) -> Result<(i64, Run)> {
            Ok((row.try_get("seq")?, parse_json(&row.try_get::<String, _>("document")?)?))
        }

        #[async_trait::async_trait]
        impl RunStore for $tx {
            async fn insert_run(&mut self, run: &Run, labels: Option<&[String]>) -> Result<i64> {
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
                .bind(to_json(run)?)
                .fetch_one(&mut *self.tx)
                .await?;
                for label in labels.unwrap_or_default() {
                    sqlx::query("INSERT INTO run_labels (run_id, label) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(&run.id)
                        .bind(label)
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(seq)
            }

            async fn run(&mut self, id: &str, lock: bool) -> Result<Option<Run>> {
                // SQLite has no FOR UPDATE: its single writer already serialises writes.
                let sql = if lock && !$lock.is_empty() {
                    "SELECT seq, document FROM runs WHERE id = $1 FOR UPDATE"
                } else {
                    "SELECT seq, document FROM runs WHERE id = $1"
                };
                let row = sqlx::query(sql).bind(id).fetch_optional(&mut *self.tx).await?;
                Ok(row.as_ref().map(run_from_row).transpose()?.map(|(_, run)| run))
            }

            /// Stores the run's new state; a run that is not in progress holds no lease.
            async fn update_run(&mut self, run: &Run) -> Result<()> {
                sqlx::query(
                    "UPDATE runs SET status = $2, document = $3,
                        lease_owner = CASE WHEN $2 = 'IN_PROGRESS' THEN lease_owner END,
                        lease_until = CASE WHEN $2 = 'IN_PROGRESS' THEN lease_until END
                     WHERE id = $1",
                )
                .bind(&run.id)
                .bind(run.status.as_str())
                .bind(to_json(run)?)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn list_runs(&mut self, filter: &RunFilter, limit: u32) -> Result<Vec<(i64, Run)>> {
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
                let rows = query.fetch_all(&mut *self.tx).await?;
                rows.iter().map(run_from_row).collect()
            }

            /// The oldest queued runner run that needs no label outside `labels`, locked for the
            /// claimer (skipping runs another claimer holds).
            /// In a write transaction claims it; in a read one only looks.
            async fn claimable_run(&mut self, labels: &[String]) -> Result<Option<Run>> {
                let lock = self.writable;
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
                let row = query.fetch_optional(&mut *self.tx).await?;
                Ok(row.as_ref().map(run_from_row).transpose()?.map(|(_, run)| run))
            }

            /// Runs in progress whose runner lease ran out before `now`, locked for the caller.
            async fn lost_runs(&mut self, now: Millis, limit: u32) -> Result<Vec<Run>> {
                let rows = sqlx::query(concat!(
                    "SELECT seq, document FROM runs WHERE status = 'IN_PROGRESS' AND lease_until < $1
                     ORDER BY seq LIMIT $2",
                    $lock
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(|row| Ok(run_from_row(row)?.1)).collect()
            }

            /// Leases a run to `owner` until `until`; with `only_if_owner`, only if it already holds it.
            async fn lease_run(&mut self, id: &str, owner: &str, until: Millis, only_if_owner: bool) -> Result<bool> {
                let sql = if only_if_owner {
                    "UPDATE runs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'IN_PROGRESS'"
                } else {
                    "UPDATE runs SET lease_owner = $2, lease_until = $3 WHERE id = $1"
                };
                let done = sqlx::query(sql).bind(id).bind(owner).bind(until).execute(&mut *self.tx).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn run_lease(&mut self, id: &str) -> Result<Option<(String, Millis)>> {
                let row = sqlx::query("SELECT lease_owner, lease_until FROM runs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let owner: Option<String> = row.try_get("lease_owner")?;
                let until: Option<Millis> = row.try_get("lease_until")?;
                Ok(owner.zip(until))
            }

            async fn append_run_logs(&mut self, run_id: &str, logs: &[NewRunLog]) -> Result<()> {
                for log in logs {
                    sqlx::query("INSERT INTO run_logs (run_id, at, stream, message) VALUES ($1, $2, $3, $4)")
                        .bind(run_id)
                        .bind(log.at)
                        .bind(&log.stream)
                        .bind(&log.message)
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(())
            }

            async fn run_logs(&mut self, run_id: &str, after: i64, limit: u32) -> Result<Vec<RunLog>> {
                let rows = sqlx::query(
                    "SELECT seq, at, stream, message FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(run_id)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
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
            async fn link_run_entities(&mut self, run_id: &str, changes: &[(EntityRef, &str)], at: Millis) -> Result<()> {
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
                    .execute(&mut *self.tx)
                    .await?;
                }
                Ok(())
            }

            async fn run_entities(&mut self, run_id: &str) -> Result<Vec<(EntityRef, String)>> {
                let rows = sqlx::query(
                    "SELECT blueprint, identifier, change FROM run_entities WHERE run_id = $1 ORDER BY at, blueprint, identifier",
                )
                .bind(run_id)
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|row| {
                        let entity = EntityRef { blueprint: row.try_get("blueprint")?, identifier: row.try_get("identifier")? };
                        Ok((entity, row.try_get("change")?))
                    })
                    .collect()
            }

            async fn entity_runs(&mut self, entity: &EntityRef, limit: u32) -> Result<Vec<(String, String)>> {
                let rows = sqlx::query(
                    "SELECT run_id, change FROM run_entities WHERE blueprint = $1 AND identifier = $2
                     ORDER BY at DESC LIMIT $3",
                )
                .bind(&entity.blueprint)
                .bind(&entity.identifier)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(|row| Ok((row.try_get("run_id")?, row.try_get("change")?))).collect()
            }
        }
    };
}

pub(crate) use run_store;
