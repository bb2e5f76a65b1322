//! Storage of the audit log. Appends take the log's head in turn (PostgreSQL locks its row;
//! SQLite has one writer), so records get gapless numbers and one chain however many replicas
//! write. The SQL is the same on both backends.

use portolan_model::Millis;

/// Which records to list; newest first, before `before` (a record's `seq`) when given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub blueprint: Option<String>,
    pub run: Option<String>,
    pub actor: Option<String>,
    pub origin: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    pub before: Option<i64>,
}

/// Rows per multi-row insert (14 parameters each, under SQLite's limit).
const INSERT_CHUNK: usize = 500;

macro_rules! queries {
    ($db:ty, $lock:literal) => {
        use portolan_model::audit::{AuditEntry, AuditKey, AuditRecord, StoredRecord};
        use sqlx::{AssertSqlSafe, Row, Transaction};

        use crate::audit::{AuditFilter, INSERT_CHUNK};
        use crate::{Result, StoreError};

        type Tx = Transaction<'static, $db>;
        type DbRow = <$db as sqlx::Database>::Row;

        pub async fn audit_head(tx: &mut Tx) -> Result<(i64, String)> {
            head(tx, "").await
        }

        /// The head; `lock` is what makes appenders take it in turn (nothing on SQLite).
        async fn head(tx: &mut Tx, lock: &str) -> Result<(i64, String)> {
            let row = sqlx::query(AssertSqlSafe(format!("SELECT seq, hash FROM audit_head WHERE id = 1{lock}")))
                .fetch_one(&mut **tx)
                .await?;
            Ok((row.try_get("seq")?, row.try_get("hash")?))
        }

        /// Appends entries to the chain, in order, in the caller's transaction, each with its MAC
        /// under `key` when the store has one.
        pub async fn append_audit(tx: &mut Tx, entries: &[AuditEntry], key: Option<&AuditKey>) -> Result<()> {
            if entries.is_empty() {
                return Ok(());
            }
            let (mut seq, mut prev) = head(tx, $lock).await?;
            for chunk in entries.chunks(INSERT_CHUNK) {
                let mut sealed = Vec::with_capacity(chunk.len());
                for entry in chunk {
                    seq += 1;
                    let (record, text) = entry.clone().seal(seq, &prev, key);
                    prev = record.hash.clone();
                    sealed.push((record, text));
                }
                let marks: Vec<String> = (0..sealed.len())
                    .map(|i| {
                        let n = i * 14;
                        format!(
                            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                            n + 1,
                            n + 2,
                            n + 3,
                            n + 4,
                            n + 5,
                            n + 6,
                            n + 7,
                            n + 8,
                            n + 9,
                            n + 10,
                            n + 11,
                            n + 12,
                            n + 13,
                            n + 14
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO audit_log (seq, at, actor, origin, action, resource_type, resource_id, blueprint,
                       run_id, status, record, prev_hash, hash, mac) VALUES {}",
                    marks.join(", ")
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
                query.execute(&mut **tx).await?;
            }
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(seq)
                .bind(&prev)
                .execute(&mut **tx)
                .await?;
            Ok(())
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

        /// Records matching `filter`, newest first.
        pub async fn audit_records(tx: &mut Tx, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>> {
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
            let rows = query.fetch_all(&mut **tx).await?;
            rows.iter().map(record_from_row).collect()
        }

        /// Stored records after `after`, oldest first, as they are on disk (for verifying and export).
        pub async fn audit_chain(tx: &mut Tx, after: i64, limit: u32) -> Result<Vec<StoredRecord>> {
            let rows = sqlx::query(
                "SELECT seq, at, actor, origin, action, resource_type, resource_id, blueprint, run_id, status, record,
                   prev_hash, hash, mac FROM audit_log
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
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
    };
}

pub(crate) mod sqlite {
    queries!(sqlx::Sqlite, "");
}

pub(crate) mod postgres {
    queries!(sqlx::Postgres, " FOR UPDATE");
}
