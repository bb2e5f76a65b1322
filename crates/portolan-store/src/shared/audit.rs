//! Storage of the audit log. Appends take the log's head in turn (PostgreSQL locks its row;
//! SQLite has one writer), so records get gapless numbers and one chain however many replicas
//! write.

/// Implements [`crate::AuditStore`] for a backend's transaction type: `$tx` has a field
/// `tx: sqlx::Transaction<'static, $db>` and a field `audit_key: Option<AuditKey>` (what its
/// appends are signed with); `$lock` is what makes appenders take the head in turn.
macro_rules! audit_store {
    ($tx:ty, $db:ty, $lock:literal) => {
        use portolan_model::audit::{AuditEntry, AuditRecord, StoredRecord};
        use sqlx::{AssertSqlSafe, Row, Transaction};

        use crate::shared::INSERT_CHUNK;
        use crate::{AuditFilter, AuditStore, Result, StoreError};

        type DbTx = Transaction<'static, $db>;
        type DbRow = <$db as sqlx::Database>::Row;

        /// The head; `lock` is what makes appenders take it in turn (nothing on SQLite).
        async fn head(tx: &mut DbTx, lock: &str) -> Result<(i64, String)> {
            let row = sqlx::query(AssertSqlSafe(format!("SELECT seq, hash FROM audit_head WHERE id = 1{lock}")))
                .fetch_one(&mut **tx)
                .await?;
            Ok((row.try_get("seq")?, row.try_get("hash")?))
        }

        fn record_from_row(row: &DbRow) -> Result<AuditRecord> {
            let text: String = row.try_get("record")?;
            let mut value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let serde_json::Value::Object(map) = &mut value {
                map.insert("prevHash".into(), serde_json::Value::from(row.try_get::<String, _>("prev_hash")?));
                map.insert("hash".into(), serde_json::Value::from(row.try_get::<String, _>("hash")?));
                if let Some(mac) = row.try_get::<Option<String>, _>("mac")? {
                    map.insert("mac".into(), serde_json::Value::from(mac));
                }
            }
            serde_json::from_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
        }

        #[async_trait::async_trait]
        impl AuditStore for $tx {
            async fn audit_head(&mut self) -> Result<(i64, String)> {
                head(&mut self.tx, "").await
            }

            /// Appends entries to the chain, in order, in the caller's transaction, each with its MAC
            /// under `key` when the store has one.
            async fn append_audit(&mut self, entries: &[AuditEntry]) -> Result<()> {
                let key = self.audit_key.as_ref();
                if entries.is_empty() {
                    return Ok(());
                }
                let (mut seq, mut prev) = head(&mut self.tx, $lock).await?;
                for chunk in entries.chunks(INSERT_CHUNK) {
                    let mut sealed = Vec::with_capacity(chunk.len());
                    for entry in chunk {
                        seq += 1;
                        let (record, text) = entry.clone().seal(seq, &prev, key);
                        prev = record.hash.clone();
                        sealed.push((record, text));
                    }
                    let sql = format!(
                        "INSERT INTO audit_log (seq, at, actor, origin, action, resource_type, resource_id, blueprint,
                           run_id, status, record, prev_hash, hash, mac) VALUES {}",
                        crate::shared::value_rows(<$db as sqlx::Database>::NAME, sealed.len(), 14)
                    );
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for (record, text) in &sealed {
                        let e = &record.entry;
                        query = query
                            .bind(record.seq)
                            .bind(e.at)
                            .bind(&e.actor)
                            .bind(&e.origin)
                            .bind(&e.action)
                            .bind(&e.resource_type)
                            .bind(&e.resource_id)
                            .bind(&e.blueprint)
                            .bind(&e.run)
                            .bind(&e.status)
                            .bind(text)
                            .bind(&record.prev_hash)
                            .bind(&record.hash)
                            .bind(&record.mac);
                    }
                    query.execute(&mut *self.tx).await?;
                }
                sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(&prev)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            /// Records matching `filter`, newest first.
            async fn audit_records(&mut self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>> {
                let mut sql = String::from("SELECT record, prev_hash, hash, mac FROM audit_log WHERE 1 = 1");
                let mut texts: Vec<String> = Vec::new();
                let mut numbers: Vec<i64> = Vec::new();
                for (column, value) in [
                    ("resource_type", &filter.resource_type),
                    ("resource_id", &filter.resource_id),
                    ("blueprint", &filter.blueprint),
                    ("run_id", &filter.run),
                    ("actor", &filter.actor),
                    ("origin", &filter.origin),
                    ("action", &filter.action),
                    ("status", &filter.status),
                ] {
                    if let Some(value) = value {
                        texts.push(value.clone());
                        sql.push_str(&format!(" AND {column} = ${}", texts.len()));
                    }
                }
                for (condition, value) in [("at >=", filter.from), ("at <=", filter.to), ("seq <", filter.before)] {
                    if let Some(value) = value {
                        numbers.push(value);
                        sql.push_str(&format!(" AND {condition} ${}", texts.len() + numbers.len()));
                    }
                }
                sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for value in texts {
                    query = query.bind(value);
                }
                for value in numbers {
                    query = query.bind(value);
                }
                let rows = query.fetch_all(&mut *self.tx).await?;
                rows.iter().map(record_from_row).collect()
            }

            async fn entity_records_at(&mut self, blueprint: Option<&str>, at: i64) -> Result<Vec<AuditRecord>> {
                let changed = "resource_type = 'entity' AND status = 'success'";
                let of_blueprint = if blueprint.is_some() { " AND blueprint = $2" } else { "" };
                // SQLite, without statistics, would rather walk the index by resource type (every
                // entity record) than the one by time (only those since).
                let by_time = if <$db as sqlx::Database>::NAME == "SQLite" { " INDEXED BY audit_at" } else { "" };
                // The entities changed since, from the log's index by time; then each one's newest
                // record up to then, a step down its own index: the cost follows the changes since
                // `at`, not the size of the log.
                let sql = format!(
                    "SELECT record, prev_hash, hash, mac FROM audit_log WHERE seq IN (
                       SELECT (SELECT max(b.seq) FROM audit_log b WHERE b.resource_type = 'entity'
                                 AND b.resource_id = c.resource_id AND b.blueprint = c.blueprint
                                 AND b.status = 'success' AND b.at <= $1)
                       FROM (SELECT DISTINCT blueprint, resource_id FROM audit_log{by_time}
                             WHERE {changed} AND at > $1{of_blueprint}) AS c)
                     ORDER BY seq"
                );
                let mut query = sqlx::query(AssertSqlSafe(sql)).bind(at);
                if let Some(blueprint) = blueprint {
                    query = query.bind(blueprint);
                }
                let rows = query.fetch_all(&mut *self.tx).await?;
                rows.iter().map(record_from_row).collect()
            }

            /// Stored records after `after`, oldest first, as they are on disk (for verifying and export).
            async fn audit_chain(&mut self, after: i64, limit: u32) -> Result<Vec<StoredRecord>> {
                let rows = sqlx::query(
                    "SELECT seq, at, actor, origin, action, resource_type, resource_id, blueprint, run_id, status, record,
                       prev_hash, hash, mac FROM audit_log
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(StoredRecord {
                            seq: row.try_get("seq")?,
                            at: row.try_get("at")?,
                            actor: row.try_get("actor")?,
                            origin: row.try_get("origin")?,
                            action: row.try_get("action")?,
                            resource_type: row.try_get("resource_type")?,
                            resource_id: row.try_get("resource_id")?,
                            blueprint: row.try_get("blueprint")?,
                            run: row.try_get("run_id")?,
                            status: row.try_get("status")?,
                            text: row.try_get("record")?,
                            prev_hash: row.try_get("prev_hash")?,
                            hash: row.try_get("hash")?,
                            mac: row.try_get("mac")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use audit_store;
