//! Storage of background jobs, singleton work and timer expiries.

/// Implements [`crate::JobStore`] for a backend's transaction type `$tx` (a field
/// `tx: sqlx::Transaction<'static, $db>`, `json_param`/`json_column` for JSON values); `$lock`
/// is what a claiming select appends. SQLite needs nothing (one writer: a claim's select and
/// update cannot interleave with another claim); PostgreSQL skips locked rows, so concurrent
/// claimers on other replicas take other rows instead of waiting.
macro_rules! job_store {
    ($tx:ty, $db:ty, $lock:literal) => {
        use portolan_model::Millis;
        use serde_json::Value;
        use sqlx::Row;

        use crate::{Job, JobStore, NewJob, Result};

        #[async_trait::async_trait]
        impl JobStore for $tx {
            async fn enqueue_jobs(&mut self, jobs: &[NewJob]) -> Result<()> {
                // One statement per chunk: a bulk write queues a recompute for each entity it touches.
                for chunk in jobs.chunks(crate::shared::INSERT_CHUNK) {
                    let sql = format!(
                        "INSERT INTO jobs (kind, dedupe_key, payload, run_after, created_at) VALUES {}
                         ON CONFLICT (dedupe_key) WHERE lease_owner IS NULL DO NOTHING",
                        crate::shared::value_rows(<$db as sqlx::Database>::NAME, chunk.len(), 5)
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for job in chunk {
                        query = query
                            .bind(&job.kind)
                            .bind(&job.dedupe_key)
                            .bind(<$tx>::json_param(&job.payload)?)
                            .bind(job.run_after)
                            .bind(job.run_after);
                    }
                    query.execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn claim_jobs(&mut self, owner: &str, now: Millis, lease_ms: i64, limit: u32) -> Result<Vec<Job>> {
                // `attempts` is a 32-bit integer on PostgreSQL.
                let rows = sqlx::query(concat!(
                    "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM jobs WHERE run_after <= $3 AND (lease_until IS NULL OR lease_until < $3)
                                  ORDER BY id LIMIT $4",
                    $lock,
                    ")
                     RETURNING id, kind, payload, CAST(attempts AS BIGINT) AS attempts, lease_until"
                ))
                .bind(owner)
                .bind(now + lease_ms)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(Job {
                            id: row.try_get("id")?,
                            kind: row.try_get("kind")?,
                            payload: <$tx>::json_column(row, "payload")?,
                            attempts: row.try_get("attempts")?,
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
                    self.complete_job(id, owner).await?;
                } else {
                    sqlx::query(
                        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, run_after = $3
                         WHERE id = $1 AND lease_owner = $2",
                    )
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

            async fn acquire_singleton(
                &mut self,
                name: &str,
                owner: &str,
                now: Millis,
                lease_ms: i64,
            ) -> Result<Option<Value>> {
                let row = sqlx::query(
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
                row.as_ref().map(|row| <$tx>::json_column(row, "state")).transpose()
            }

            async fn save_singleton(&mut self, name: &str, owner: &str, state: &Value) -> Result<bool> {
                let done = sqlx::query("UPDATE singletons SET state = $1 WHERE name = $2 AND owner = $3")
                    .bind(<$tx>::json_param(state)?)
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
        }
    };
}

pub(crate) use job_store;
